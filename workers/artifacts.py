"""A run's artifacts: weights.npz, cost_curve.png, spec.json, network.md, and the model as an
MLflow 3 LoggedModel (a pyfunc with a signature and an input example, under the model's own
artifacts, loaded as ``models:/<model_id>``; DESIGN.md section 7).

They go up in two parts (``RunArtifacts``): what is known before training (spec.json, network.md and
the model without its weights and its MLmodel file) is written and uploaded while the network
trains (in the worker, by its helper process: workers/mlflow_process.py; writing them is mostly
MLflow's save_model, which the job would otherwise wait for before training (docs/benchmarks.md,
'Measured by hand')); the trained weights, the plot, MLmodel (what makes the files a model MLflow
loads), the final metrics linked to the model, and its READY status after."""

import json
import logging
import posixpath
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from contract.spec import JobSpec, flatten
from models import Network, save_weights
from workers import artifact_batch, network_doc, tracking
from workers.cost_curve import plot_cost_curve
from workers.model_files import WEIGHTS_IN_MODEL, write_model_files
from workers.orphaned_folders import folder_for_this_process

log = logging.getLogger(__name__)

MODEL_FOLDER = "model"
MODEL_NAME = "model"  # the LoggedModel's name: runs:/<run_id>/model still finds it
MODEL_TYPE = "gradq-network"


@dataclass(frozen=True)
class ModelRef:
    """A run's LoggedModel: its id (``models:/<model_id>``) and where its files go."""

    model_id: str
    artifact_location: str


def logged_model_for(
    client: MlflowClient,
    experiment_id: str,
    run_id: str,
    job_id: str,
    params: dict[str, str],
    resumed: bool,
) -> tuple[ModelRef, bool]:
    """The run's LoggedModel, PENDING until the run's end, with the run's ``params`` (the
    Models tab shows them): an earlier attempt's when the run is resumed (its files are sent
    again), else a new one; and whether it is new."""
    if resumed:
        found = client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{run_id}'", max_results=1
        )
        if found:
            return ModelRef(found[0].model_id, found[0].artifact_location), False
    model = client.create_logged_model(
        experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        tags={"gradq.job_id": job_id},
        params=params,
        model_type=MODEL_TYPE,
    )
    return ModelRef(model.model_id, model.artifact_location), True


def write_files_before_training(folder: Path, part: "FirstPart") -> Path:
    """spec.json and network.md into ``folder``/run, and the model without
    artifacts/weights.npz and MLmodel into ``folder``/model; returns the MLmodel file, moved
    into a folder of its own beside ``folder``."""
    net, spec = part.network(), part.spec
    run_files, model = folder / "run", folder / MODEL_FOLDER
    run_files.mkdir()
    (run_files / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2))
    (run_files / "network.md").write_text(network_doc.render(net, spec, part.classes, part.m_train))
    write_model_files(model, net, part.classes, part.mlmodel(), part.example)
    mlmodel = folder.parent / "mlmodel"
    shutil.rmtree(mlmodel, ignore_errors=True)
    mlmodel.mkdir()
    return (model / "MLmodel").rename(mlmodel / "MLmodel")


@dataclass(frozen=True)
class FirstPart:
    """What the files known before training are written from: the network's layout, not its
    weights (they are written at the end), so it is small to send to the helper process."""

    spec: JobSpec
    layer_dims: tuple[int, ...]
    hidden_activation: str
    output: str
    init: str | None
    dtype: str
    classes: tuple[str, ...]
    m_train: int
    example: np.ndarray  # (1, n_x): a training example, the model's input example
    run_id: str = ""
    run_artifact_uri: str = ""
    model: ModelRef | None = None  # known once the LoggedModel is made

    @classmethod
    def of(
        cls,
        net: Network,
        spec: JobSpec,
        classes: tuple[str, ...],
        m_train: int,
        example: np.ndarray,
    ):
        return cls(spec, tuple(net.layer_dims), net.hidden_activation.name, net.output.name,
                   net.init, net.dtype.name, tuple(classes), m_train,
                   np.asarray(example, dtype=net.dtype).reshape(1, -1))  # fmt: skip

    def mlmodel(self) -> Model | None:
        """The MLmodel's description of the LoggedModel, so that its files name their model."""
        if self.model is None:
            return None
        return Model(
            artifact_path=self.model.artifact_location,
            model_uuid=self.model.model_id,
            run_id=self.run_id,
            model_id=self.model.model_id,
        )

    def network(self) -> Network:
        """A network of this layout (its initial weights are not the run's: none is uploaded)."""
        return Network(list(self.layer_dims), self.hidden_activation, self.output, self.init,
                       dtype=self.dtype)  # fmt: skip


def write_and_upload_first_part(client: MlflowClient, folder: str, part: FirstPart) -> None:
    """The files known before training written into ``folder``/before (anew, if an earlier
    call left some) and uploaded: spec.json and network.md to the run's root, the model's to
    the LoggedModel's; MLmodel is kept as ``folder``/mlmodel/MLmodel for the end of the run."""
    before = Path(folder) / "before"
    shutil.rmtree(before, ignore_errors=True)
    before.mkdir()
    write_files_before_training(before, part)
    upload(client, [(part.run_artifact_uri, str(before / "run")),
                    (part.model.artifact_location, str(before / MODEL_FOLDER))])  # fmt: skip


UPLOAD_THREADS = 4


@dataclass(frozen=True)
class Upload:
    repo: ArtifactRepository
    local: str
    under: str | None  # the folder under the repository's root, None for the root
    served: tuple[str, str] | None  # (server, path under its artifact root), if proxied


Folders = list[tuple[str, str]]  # (artifact URI, local folder): its files go there


def upload(client: MlflowClient, folders: Folders, last: Folders = ()) -> None:
    """Every file under each folder to the artifacts at its URI (subfolders kept), and those
    of ``last`` once all the others are stored (a model's MLmodel, which makes it loadable).
    To a proxied store, a batch a request where the server takes batches
    (workers/artifact_batch.py: it writes them in order, so ``last`` can ride along); else a
    request a file, several at once (the server mostly waits on its store meanwhile). The URIs
    are known (the run's and the model's), so no request asks for them either."""
    first, then = files_of(client, folders), files_of(client, last)
    if then and send(first + then, all_batched=True):
        return
    send(first)
    send(then)


def files_of(client: MlflowClient, folders: Folders) -> list[Upload]:
    uploads = []
    for uri, folder in folders:
        repo = get_artifact_repository(uri, tracking_uri=client.tracking_uri)
        root, served = Path(folder), artifact_batch.served_path(repo)
        if not root.is_dir():  # not an empty upload: a model would be READY without MLmodel
            raise FileNotFoundError(f"no folder {folder} to upload")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            under = posixpath.dirname(relative) or None
            at = (served[0], posixpath.join(served[1], relative)) if served else None
            uploads.append(Upload(repo, str(path), under, at))
    return uploads


def send(uploads: list[Upload], all_batched: bool = False) -> bool:
    """``uploads`` sent (none: nothing to do): in batches where they can be, the rest a
    request a file; with ``all_batched``, only if every one can go in one server's batches
    (else nothing is sent). Whether they were."""
    servers = {one.served[0] if one.served else None for one in uploads}
    if all_batched and (None in servers or len(servers) > 1):
        return False
    batched: set[int] = set()  # indexes into uploads
    for server in servers - {None}:
        mine = [i for i, one in enumerate(uploads) if one.served and one.served[0] == server]
        files = [(uploads[i].local, uploads[i].served[1]) for i in mine]
        cut, alone = artifact_batch.batches(files)
        if all_batched and alone:
            return False
        if len(mine) > 1 and artifact_batch.send(server, cut):
            batched.update(i for i, file in zip(mine, files, strict=True) if file not in alone)
        elif all_batched:
            return False
    one_by_one = [one for i, one in enumerate(uploads) if i not in batched]
    with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="mlflow-upload") as pool:
        done = [pool.submit(one.repo.log_artifact, one.local, one.under) for one in one_by_one]
    for each in done:
        each.result()  # the first error, raised
    return True


class Sender:
    """How RunArtifacts sends files: by ``client``; the worker's go through its helper process
    instead (workers/mlflow_process.py MlflowProcess, the same methods)."""

    def __init__(self, client: MlflowClient):
        self.client = client

    def upload(self, folders: Folders, last: Folders = ()) -> None:
        upload(self.client, folders, last)

    def write_first_artifacts(self, folder: str, part: FirstPart) -> None:
        write_and_upload_first_part(self.client, folder, part)


class RunArtifacts:
    """The artifacts of one attempt's run. ``RunArtifacts(...)`` before training makes (or,
    resumed, finds) the run's LoggedModel, links it to the run as its output at the last epoch,
    and uploads the first part, in a thread. After training, ``model_id()`` is the model's id
    (for the final metrics, linked to it), and ``finish(net, history, title)`` draws and
    uploads cost_curve.png while the thread, once the first part is sent (again, if it failed),
    completes the model: weights.npz (to the run and to the model), then MLmodel, and READY.
    Safe to call again after an error. ``close()`` removes the local files once the thread is
    done, without waiting for it: a job that failed or is handed back does not wait on MLflow
    for files that no longer matter (a model left PENDING, without MLmodel, is not one MLflow
    offers to load)."""

    def __init__(
        self,
        client: MlflowClient,
        run: tracking.RunRef,
        part: FirstPart,
        *,
        job_id: str = "",
        resumed: bool = False,
        sender: Sender | None = None,
    ):
        self.client, self.run_id, self._run_uri = client, run.run_id, run.artifact_uri
        self._sender = sender or Sender(client)
        self._folder = folder_for_this_process()
        self._part = part
        params = {k: str(v) for k, v in flatten(part.spec.model_dump(mode="json")).items()}
        self._find_or_make = partial(
            logged_model_for, client, run.experiment_id, run.run_id, job_id, params
        )
        self._resumed = resumed
        self._mlmodel = self._folder / "mlmodel"  # MLmodel, written there with the first part
        self._model_lock = threading.Lock()  # one LoggedModel, whichever thread makes it
        self._uploader = ThreadPoolExecutor(1, thread_name_prefix="mlflow-artifacts")
        self._tasks: list[Future] = []  # what the thread was given: the folder outlives them
        self._model_made = self._submit(self._ensure_model)
        self._first_part = self._submit(self._send_first_part)
        self._first_part_sent = False
        self._completing: Future | None = None  # finish's upload of the model's last files

    def _submit(self, call, *args) -> Future:
        task = self._uploader.submit(call, *args)
        self._tasks.append(task)
        return task

    def _ensure_model(self) -> None:
        with self._model_lock:
            if self._part.model is None:
                self._make_model()

    def _make_model(self) -> None:
        model, made = self._find_or_make(self._resumed)
        self._resumed = True  # made: a call after a failure finds it rather than make another
        outputs = [] if made else self.client.get_run(self.run_id).outputs.model_outputs
        if model.model_id not in {output.model_id for output in outputs}:  # once a run
            step = self._part.spec.training.epochs
            self.client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step)])
        self._part = replace(
            self._part, run_id=self.run_id, run_artifact_uri=self._run_uri, model=model
        )

    def _send_first_part(self) -> None:
        self._ensure_model()
        self._sender.write_first_artifacts(str(self._folder), self._part)

    def model_id(self) -> str:
        """The LoggedModel's id: made in the thread, or now if that failed (MLflow away: the
        caller's wait_for tries again)."""
        try:
            self._model_made.result()
        except Exception as error:
            log.warning("logged model of run %s not made, again: %s", self.run_id, error)
        self._ensure_model()
        return self._part.model.model_id

    def finish(self, net: Network, history: dict[str, list[float]], title: str) -> None:
        model_id = self.model_id()
        # A failed call's upload done before its files are written again (the first call's
        # previous upload is the first part, of other files: not waited for).
        if self._completing is not None:
            wait([self._completing])
        weights = self._folder / "weights"  # run/weights.npz, model/artifacts/weights.npz
        (weights / "run").mkdir(parents=True, exist_ok=True)
        (weights / "model" / WEIGHTS_IN_MODEL).parent.mkdir(parents=True, exist_ok=True)
        save_weights(net.params, weights / "run" / "weights.npz")
        shutil.copyfile(weights / "run" / "weights.npz", weights / "model" / WEIGHTS_IN_MODEL)
        # The model is completed in the uploader thread, after the first part (the weights,
        # then MLmodel, then READY), while this one draws the plot and sends it: the plot is
        # CPU, the rest mostly the helper's and the server's time.
        self._completing = self._submit(self._complete_model, weights, model_id)
        plot = self._folder / "plot"
        plot.mkdir(exist_ok=True)
        plot_cost_curve(history, plot / "cost_curve.png", title=title)
        self._sender.upload([(self._run_uri, str(plot))])
        self._completing.result()

    def _complete_model(self, weights: Path, model_id: str) -> None:
        if not self._first_part_sent:  # done: this thread sent it (or failed to) before
            if self._first_part.exception() is not None:  # MLflow was away: send it now
                log.warning(
                    "first artifacts of run %s not sent, again: %s",
                    self.run_id, self._first_part.exception(),
                )  # fmt: skip
                self._send_first_part()
            self._first_part_sent = True
        model_uri = self._part.model.artifact_location
        self._sender.upload([(model_uri, str(weights / "model")),
                             (self._run_uri, str(weights / "run"))],
                            last=[(model_uri, str(self._mlmodel))])  # now it loads  # fmt: skip
        self.client.finalize_logged_model(model_id, LoggedModelStatus.READY)

    def close(self, discard_model: bool = False) -> None:
        """Stop sending; ``discard_model``: the attempt ended without a model (failed or
        stopped), so its LoggedModel is deleted, once made, rather than left PENDING in the
        Models tab (and not completed first). Neither waits for the thread."""
        if discard_model:
            for unwanted in (self._first_part, self._completing):
                if unwanted is not None:
                    unwanted.cancel()  # if not begun
            self._submit(self._discard_model)  # after the rest
        self._uploader.shutdown(wait=False, cancel_futures=not discard_model)
        # Removed once every call given to the thread is done (at once if they all are).
        tasks = list(self._tasks)

        def remove_when_all_done(_: Future) -> None:
            if all(task.done() for task in tasks):
                shutil.rmtree(self._folder, ignore_errors=True)

        for task in tasks:
            task.add_done_callback(remove_when_all_done)

    def _discard_model(self) -> None:
        if self._part.model is None:
            return
        try:
            self.client.delete_logged_model(self._part.model.model_id)
        except Exception as error:  # best effort: the job's end does not wait on it
            log.warning("logged model of run %s not deleted: %s", self.run_id, error)
