"""A run's artifacts: weights.npz, cost_curve.png, spec.json, network.md, and the model as an
MLflow pyfunc under model/ (DESIGN.md section 7).

They go up in two parts (``RunArtifacts``): what is known before training (spec.json, network.md and
the model without its weights and its MLmodel file: 25 of 29 files) is written and uploaded while
the network trains (in the worker, by its helper process: workers/mlflow_process.py; writing them is
mostly MLflow's save_model, which the job would otherwise wait for before training
(docs/benchmarks.md, 'Measured by hand')); the trained weights, the plot, and last MLmodel (what
makes model/ a model that MLflow loads and registers) after."""

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import mlflow.pyfunc
from mlflow.tracking import MlflowClient

import models
from contract.spec import JobSpec
from models import Network, save_weights
from workers import network_doc
from workers.cost_curve import plot_cost_curve

log = logging.getLogger(__name__)

PYFUNC_MODEL_FILE = Path(__file__).with_name("pyfunc_model.py")
WEIGHTS_IN_MODEL = "artifacts/weights.npz"  # where save_model puts the weights artifact
TEMP_PREFIX = "gradq-artifacts-"  # then the process id: remove_orphaned_folders reads it
MODEL_FOLDER = "model"
WEIGHTS_FOLDER = PurePosixPath(MODEL_FOLDER, WEIGHTS_IN_MODEL).parent.as_posix()
MODELS_PACKAGE = Path(models.__file__).resolve().parent


def write_files_before_training(
    folder: Path, net: Network, spec: JobSpec, classes: tuple[str, ...], m_train: int
) -> Path:
    """spec.json, network.md and model/ without model/artifacts/weights.npz and model/MLmodel
    into ``folder``; returns the MLmodel file, moved beside ``folder``."""
    (folder / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2))
    (folder / "network.md").write_text(network_doc.render(net, spec, classes, m_train))
    model = folder / MODEL_FOLDER
    with tempfile.TemporaryDirectory(prefix="gradq-weights-") as scratch:
        initial = Path(scratch) / "weights.npz"  # the architecture is what matters here
        save_weights(net.params, initial)
        save_pyfunc_model(model, net, classes, initial)
    (model / WEIGHTS_IN_MODEL).unlink()  # the trained ones are uploaded at the end
    return (model / "MLmodel").rename(folder.parent / "MLmodel")


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

    @classmethod
    def of(cls, net: Network, spec: JobSpec, classes: tuple[str, ...], m_train: int):
        return cls(spec, tuple(net.layer_dims), net.hidden_activation.name, net.output.name,
                   net.init, net.dtype.name, tuple(classes), m_train)  # fmt: skip

    def network(self) -> Network:
        """A network of this layout (its initial weights are not the run's: none is uploaded)."""
        return Network(list(self.layer_dims), self.hidden_activation, self.output, self.init,
                       dtype=self.dtype)  # fmt: skip


def write_and_upload_first_part(
    client: MlflowClient, run_id: str, folder: str, part: FirstPart
) -> None:
    """The files known before training written into ``folder``/before (anew, if an earlier
    call left some) and uploaded to the run's root; model/MLmodel is kept as ``folder``/MLmodel
    for the end of the run."""
    before = Path(folder) / "before"
    shutil.rmtree(before, ignore_errors=True)
    before.mkdir()
    write_files_before_training(before, part.network(), part.spec, part.classes, part.m_train)
    client.log_artifacts(run_id, str(before))


def save_pyfunc_model(path: Path, net: Network, classes: tuple[str, ...], weights: Path) -> None:
    """The network as an MLflow pyfunc saved from code (workers/pyfunc_model.py) at ``path``."""
    network_json = path.parent / "network.json"
    network_json.write_text(
        json.dumps(
            {
                "layer_dims": net.layer_dims,
                "hidden_activation": net.hidden_activation.name,
                "output": net.output.name,
                "dtype": net.dtype.name,
                "classes": list(classes),
            }
        )
    )
    # MLflow warns at every save that predict has no type hints (its "once" filter is reset
    # by its own catch_warnings). On purpose: the model takes any (m, n_x) array or DataFrame;
    # a type hint it understands would make MLflow convert the input, and np.ndarray, which
    # it does not, trades the warning for a logged "Failed to infer model signature".
    mlflow.pyfunc.save_model(
        path,
        python_model=str(PYFUNC_MODEL_FILE),
        artifacts={"weights": str(weights), "network": str(network_json)},
        code_paths=[str(MODELS_PACKAGE)],
        # Explicit: inferring requirements starts a subprocess and takes seconds.
        pip_requirements=["numpy"],
    )
    _forget_code_model_modules()
    network_json.unlink()  # inside model/artifacts/ now


def _forget_code_model_modules() -> None:
    """MLflow runs the model's code as a new module ``code_model_<uuid>`` at every save and
    leaves it in sys.modules: a worker that saves a model per job would keep them all."""
    for name in [n for n in sys.modules if n.startswith("code_model_")]:
        del sys.modules[name]


class RunArtifacts:
    """The artifacts of one attempt's run: ``RunArtifacts(...)`` before training starts the
    upload of the first part in a thread; ``finish(net, history, title)`` after training waits
    for it (sending the part again if it failed), uploads weights.npz (at the top and as
    model/artifacts/weights.npz) from the thread while it draws the plot, uploads
    cost_curve.png, then model/MLmodel. Safe to call again after an error. ``close()``
    removes the local files once the thread is done, without waiting for it: a job that
    failed or is handed back does not wait on MLflow for files that no longer matter (model/
    without MLmodel is not a model MLflow offers to load)."""

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        net: Network,
        spec: JobSpec,
        classes: tuple[str, ...],
        m_train: int,
        upload_folder: Callable[[str, str], None] | None = None,
        upload_file: Callable[[str, str, str], None] | None = None,
        write_first_part: Callable[[str, str, FirstPart], None] | None = None,
    ):
        self.client, self.run_id = client, run_id
        # upload_folder(run_id, folder), upload_file(run_id, path, artifact_path) and
        # write_first_part(run_id, folder, part) (write_and_upload_first_part): by this client
        # unless told otherwise (the worker's go through its helper process,
        # workers/mlflow_process.py).
        self._upload_folder = upload_folder or client.log_artifacts
        self._upload_file = upload_file or client.log_artifact
        self._write_first_part = write_first_part or partial(write_and_upload_first_part, client)
        self._folder = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        self._part = FirstPart.of(net, spec, classes, m_train)
        self._mlmodel = self._folder / "MLmodel"  # written there with the first part
        self._uploader = ThreadPoolExecutor(1, thread_name_prefix="mlflow-artifacts")
        self._first_part = self._uploader.submit(self._send_first_part)
        self._last_upload = self._first_part  # the thread's last call reading self._folder
        self._first_part_sent = False

    def _send_first_part(self) -> None:
        self._write_first_part(self.run_id, str(self._folder), self._part)

    def finish(self, net: Network, history: dict[str, list[float]], title: str) -> None:
        if not self._first_part_sent:
            try:
                self._first_part.result()
            except Exception as error:  # MLflow was away: send it now (wait_for retries us)
                log.warning("first artifacts of run %s not sent, again: %s", self.run_id, error)
                self._send_first_part()
            self._first_part_sent = True
        # The weights go up (over the helper process's pipe, in the worker) while this thread
        # draws the plot; then the plot, and MLmodel last. The plot is CPU, an upload mostly
        # the server's time. Every file is written anew on a second call.
        wait([self._last_upload])  # a failed call's weights upload: done before a rewrite
        weights = self._folder / "weights"
        (weights / WEIGHTS_FOLDER).mkdir(parents=True, exist_ok=True)
        save_weights(net.params, weights / "weights.npz")
        shutil.copyfile(weights / "weights.npz", weights / WEIGHTS_FOLDER / "weights.npz")
        weights_sent = self._uploader.submit(self._upload_folder, self.run_id, str(weights))
        self._last_upload = weights_sent
        plot = self._folder / "cost_curve.png"
        plot_cost_curve(history, plot, title=title)
        self._upload_file(self.run_id, str(plot), None)
        weights_sent.result()  # weights.npz, at the top and in model/
        self._upload_file(self.run_id, str(self._mlmodel), MODEL_FOLDER)  # last

    def close(self) -> None:
        self._uploader.shutdown(wait=False, cancel_futures=True)
        # Removed once the thread is done with them (at once if it is already).
        self._last_upload.add_done_callback(
            lambda _: shutil.rmtree(self._folder, ignore_errors=True)
        )


def log_orphaned_folders_removed() -> None:
    """A new pool child (one replaces a child that died) clears what dead ones left."""
    for folder in remove_orphaned_folders():
        log.info("removed %s, left by a worker process that died", folder)


def remove_orphaned_folders(root: Path | None = None) -> list[Path]:
    """Remove the artifacts folders (in ``root``, the temp folder by default) of processes
    that died before removing their own, such as a worker child SIGKILLed mid-training;
    returns them. A folder of a live process, or of a name not ours, is left alone."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        match = re.fullmatch(rf"{TEMP_PREFIX}(\d+)-\w+", folder.name)
        if match and folder.is_dir() and not _process_alive(int(match[1])):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True
