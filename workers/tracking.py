"""The MLflow adapter: one job is one run (names in DESIGN.md section 7).

Every call goes through ``MlflowClient`` against the tracking server; nothing uses MLflow's
fluent, process-global active run, so several jobs never share state. Per-epoch metrics are
appended to a buffer by the training loop and sent by a background thread with ``log_batch``,
never one request per metric (DESIGN.md section 11). None is lost silently: while MLflow
answers, a full buffer makes the training loop wait; only while it does not are values
dropped, and counted (``MetricsBuffer.undelivered``) for the job's event and run tag.
"""

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import mlflow.data
import numpy as np
import requests
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source_registry import get_registered_sources
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request_safe

from store.metric_budget import logs_epoch

log = logging.getLogger(__name__)
T = TypeVar("T")
MetricRow = tuple[str, float, int, int]  # key, value, timestamp (ms), step

# MLflow's limits for one log_batch call (mlflow/utils/validation.py).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_DATASET_DIGEST = 36
LOG_BATCH_ENDPOINT = "/api/2.0/mlflow/runs/log-batch"  # MLflow's REST API

# A job's outcome and the run status that records it.
RUN_STATUS = {
    "succeeded": RunStatus.to_string(RunStatus.FINISHED),
    "failed": RunStatus.to_string(RunStatus.FAILED),
    "cancelled": RunStatus.to_string(RunStatus.KILLED),
}

# Experiment ids by (tracking URI, name): looked up once per worker process, not once per job.
_experiment_ids: dict[tuple[str, str], str] = {}

# MLflow 3 UIs that pick an experiment's mode by its kind open one without this tag in their
# GenAI mode (traces, evaluations); tagged, in the machine-learning mode (runs, charts,
# artifacts). Later ones go by the link instead (service/schemas.py, MLFLOW_ML_MODE).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


# Experiments known to have a kind, by (tracking URI, id): checked once per worker process.
_kinds_known: set[tuple[str, str]] = set()


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created if missing (by this worker or a racing one),
    and tagged as a model-development experiment if it has no kind."""
    key = (client.tracking_uri, name)
    if key in _experiment_ids:
        return _experiment_ids[key]
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            found = client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            _kinds_known.add((client.tracking_uri, found))
            _experiment_ids[key] = found
            return found
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment = client.get_experiment_by_name(name)  # another worker won
    if experiment.lifecycle_stage != "active":
        raise MlflowException(
            f"MLflow experiment {name!r} is deleted: restore it, or use another experiment name"
        )
    tag_kind(client, experiment.experiment_id, experiment.tags)
    _experiment_ids[key] = experiment.experiment_id
    return experiment.experiment_id


def tag_kind(client: MlflowClient, experiment: str, tags: Mapping[str, str] | None = None) -> None:
    """Tag the experiment (id) as a model-development one if it has no kind yet (made before
    gradq tagged its experiments, or by hand); ``tags``: its tags, if already read."""
    key = (client.tracking_uri, experiment)
    if key in _kinds_known:
        return
    if tags is None:
        tags = client.get_experiment(experiment).tags
    if EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(experiment, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    _kinds_known.add(key)


@dataclass(frozen=True)
class RunRef:
    experiment_id: str
    run_id: str


def start_run(
    client: MlflowClient,
    *,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    existing_run_id: str | None = None,
) -> RunRef:
    """A new RUNNING run, or ``existing_run_id`` (an earlier attempt's) set running again."""
    if existing_run_id is not None:
        run = client.get_run(existing_run_id)
        client.update_run(existing_run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        log_params_and_tags(client, existing_run_id, {}, tags)
        tag_kind(client, run.info.experiment_id)  # a job resumed in an experiment made before
        return RunRef(run.info.experiment_id, existing_run_id)
    found = experiment_id(client, experiment)
    run = client.create_run(found, run_name=run_name, tags=dict(tags))
    return RunRef(found, run.info.run_id)


def unrecorded_run(client: MlflowClient, experiment: str, job_id: str) -> str | None:
    """The run an earlier attempt of job ``job_id`` created in ``experiment`` but never
    recorded in SQL (it died, or SQL was away, between the two), if any: the oldest run tagged
    with the job's id. A later attempt continues it rather than start a second run."""
    runs = client.search_runs(
        [experiment_id(client, experiment)],
        filter_string=f"tags.`gradq.job_id` = '{job_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def log_params_and_tags(
    client: MlflowClient, run_id: str, params: Mapping[str, str], tags: Mapping[str, str]
) -> None:
    """Params and tags in as few log_batch calls as MLflow's limits allow (one, usually)."""
    param_list = [Param(k, str(v)) for k, v in params.items()]
    tag_list = [RunTag(k, str(v)) for k, v in tags.items()]
    while param_list or tag_list:
        client.log_batch(
            run_id,
            params=param_list[:MAX_PARAMS_PER_BATCH],
            tags=tag_list[:MAX_TAGS_PER_BATCH],
        )
        param_list = param_list[MAX_PARAMS_PER_BATCH:]
        tag_list = tag_list[MAX_TAGS_PER_BATCH:]


def log_dataset(
    client: MlflowClient, run_id: str, name: str, dataset, sha256: str, path: str | None
) -> None:
    """The training data as the run's dataset input ``name``, read from ``path`` (None: built
    in). Its digest is the sha256's prefix (MLflow stores at most 36 characters); the whole
    sha256 is the gradq.dataset_sha256 tag."""
    numpy_dataset = mlflow.data.from_numpy(
        dataset.X.T,  # MLflow's convention: one example per row
        targets=dataset.Y[0],
        source=dataset_source(name, path),
        name=name,
        digest=sha256[:MAX_DATASET_DIGEST],
    )
    context = InputTag(key="mlflow.data.context", value="train")
    inputs = [DatasetInput(numpy_dataset._to_mlflow_entity(), [context])]
    try:
        client.log_inputs(run_id, inputs)
    except MlflowException as error:
        # Two runs of one experiment logging the same new dataset at once: the server
        # creates it for one and answers the other with a unique-constraint error (MLflow
        # 3.17). It exists now, so the second try only links it to this run.
        if "UNIQUE" not in str(error).upper() and "DUPLICATE" not in str(error).upper():
            raise
        client.log_inputs(run_id, inputs)


def dataset_source(name: str, path: str | None):
    """A local file source for an uploaded dataset, a code source naming a built-in one."""
    if path is None:
        return CodeDatasetSource({"gradq.builtin_dataset": name})
    # Built directly: resolving a path string warns that MLflow registered its local source
    # twice (MLflow 3.17).
    local = next(s for s in get_registered_sources() if s._get_source_type() == "local")
    return local(path)


def end_run(client: MlflowClient, run_id: str, outcome: str) -> None:
    client.set_terminated(run_id, RUN_STATUS[outcome])


def mark_scheduled(client: MlflowClient, run_id: str) -> None:
    """The run of a job handed back to the queue: not RUNNING, and not over either."""
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.SCHEDULED))


# Metrics logged once per run, at one step: no step below theirs is missing.
ONCE_PER_RUN_KEYS = ("gradient_check", "test_accuracy")
METRICS_INCOMPLETE_TAG = "gradq.metrics_incomplete"


@dataclass(frozen=True)
class Logged:
    """What a run already has of each metric: its highest step, and the steps below it that
    an earlier attempt should have logged but dropped (MLflow was down), to be sent again."""

    highest: dict[str, int] = field(default_factory=dict)
    missing: dict[str, frozenset[int]] = field(default_factory=dict)

    def has(self, key: str, step: int) -> bool:
        return step <= self.highest.get(key, -1) and step not in self.missing.get(key, ())


def logged_steps(
    client: MlflowClient, run_id: str, log_every: int | None = None, epochs: int | None = None
) -> Logged:
    """The run's metrics so far (Logged): the buffer sends in order, so every step below the
    highest was sent, or dropped while MLflow was down; those it dropped are found here."""
    keys = client.get_run(run_id).data.metrics
    highest, missing = {}, {}
    for key in keys:
        steps = np.fromiter((m.step for m in client.get_metric_history(run_id, key)), np.int64)
        highest[key] = int(steps.max())
        if key in ONCE_PER_RUN_KEYS or key.startswith("final."):
            continue
        expected = np.arange(0, highest[key] + 1, log_every or 1)
        if epochs is not None and logs_epoch(epochs - 1, log_every, epochs):
            expected = np.union1d(expected, [epochs - 1])
        gaps = np.setdiff1d(expected[expected <= highest[key]], steps)
        if gaps.size:
            missing[key] = frozenset(gaps.tolist())
    return Logged(highest, missing)


def wait_for(call: Callable[[], T], seconds: float, what: str) -> T:
    """``call()``, tried again with growing pauses while MLflow cannot be reached, for at most
    ``seconds``; then its last error is raised. An answer from MLflow that is an error (a
    4xx) is raised at once: trying again would not change it."""
    deadline = time.monotonic() + seconds
    pause = 0.2
    while True:
        try:
            return call()
        except Exception as error:
            if not unreachable(error) or time.monotonic() + pause > deadline:
                raise
            log.warning("%s: MLflow unreachable, trying again in %.1f s: %s", what, pause, error)
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def unreachable(error: Exception) -> bool:
    """A connection refused or reset, a timeout, or a 5xx: MLflow is down or overloaded."""
    if isinstance(error, MlflowException):
        status = getattr(error, "get_http_status_code", lambda: 500)()
        return status >= 500
    return isinstance(error, OSError | requests.RequestException)


def log_metrics(client: MlflowClient, run_id: str, rows: Sequence[MetricRow]) -> None:
    """``rows`` (at most MAX_METRICS_PER_BATCH) as one log_batch call.

    To a tracking server, the request is the JSON body of the REST API's ``runs/log-batch``,
    built here and sent the way MlflowClient sends it (its credentials, TLS, timeout and
    retries from the same MLFLOW_* settings): ~3 ms of CPU for 420 values, where
    ``MlflowClient.log_batch`` took ~10 ms turning each value into a Metric, a protobuf and
    JSON twice (measured by hand, docs/benchmarks.md). That CPU is the worker's
    GIL, which the training loop waits for. Other tracking URIs (a local store) go through
    MlflowClient."""
    uri = client.tracking_uri
    if not uri.startswith(("http://", "https://")):
        client.log_batch(run_id, metrics=[Metric(*row) for row in rows])
        return
    metrics = [
        {"key": key, "value": _json_double(value), "timestamp": timestamp, "step": step}
        for key, value, timestamp, step in rows
    ]
    http_request_safe(
        get_default_host_creds(uri),
        LOG_BATCH_ENDPOINT,
        "POST",
        data=json.dumps({"run_id": run_id, "metrics": metrics}),
        extra_headers={"Content-Type": "application/json"},
    )


def _json_double(value: float) -> float | str:
    """``value`` as protobuf's JSON writes a double: NaN and the infinities as strings."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


class MetricsBuffer:
    """Metrics appended by the training loop, sent in batches by a background thread.

    ``add`` only appends to a list under a lock (about a microsecond); a thread wakes every
    ``flush_seconds`` and sends what accumulated with ``log_batch`` (at most 1000 metrics per
    call). Each metric keeps the timestamp of its ``add``, so a batch re-sent after a failed
    call is the same rows (the store ignores exact duplicates). ``close`` sends the rest and
    stops the thread; it raises if metrics could not be sent.

    The buffer holds at most ``max_values``. Full, ``add`` waits for the thread to send while
    MLflow answers (its last send succeeded and the one under way is not past
    ``stall_seconds``), and drops the values only while it does not; ``undelivered`` counts
    what never reached MLflow. With ``log_every``, the per-epoch metrics of an epoch that is
    not a multiple of it (nor the last of ``epochs``) are not sent (store/metric_budget.py).
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        flush_seconds: float,
        *,
        logged: Logged | Mapping[str, int] | None = None,
        max_values: int = 2_000_000,
        send: Callable[[str, Sequence[MetricRow]], None] | None = None,
        log_every: int | None = None,
        epochs: int | None = None,
        stall_seconds: float = 10.0,
    ):
        self.client = client
        self.run_id = run_id
        # send(run_id, rows) if given (the worker sends through its helper process,
        # workers/mlflow_process.py), else log_metrics by this client.
        self._send = send
        self.flush_seconds = flush_seconds
        # A resumed run: the steps of each metric already in MLflow, never sent twice.
        self.logged = logged if isinstance(logged, Logged) else Logged(dict(logged or {}))
        self.max_values = max_values  # the spool's bound
        self.log_every, self.epochs = log_every, epochs
        self.stall_seconds = stall_seconds  # a send longer than this: MLflow does not answer
        self.dropped = 0
        self._values = 0  # metric values pending or unsent
        self._pending: list[tuple[int, int, Mapping[str, float]]] = []  # (step, ms, metrics)
        self._unsent: list[MetricRow] = []  # converted, but not sent yet (a failed call)
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)  # notified as values are sent or fail
        self._answering = True  # the run was just made or found: MLflow answered
        self._sending_since: float | None = None
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlflow-metrics", daemon=True)
        self._thread.start()

    def add(self, step: int, metrics: Mapping[str, float]) -> None:
        """Queue ``metrics`` at ``step``; the mapping must not change afterwards. Waits while
        the buffer is full and MLflow answers."""
        entry = (step, int(time.time() * 1000), metrics)
        count = len(metrics)
        with self._space:
            while self._values and self._values + count > self.max_values and self._waits():
                self._wake.set()  # send now, not at the next period
                self._space.wait(0.1)
            if self._values + count > self.max_values:
                self._drop(count)
                return
            self._values += count
            self._pending.append(entry)

    def _waits(self) -> bool:
        """Whether a full buffer waits for MLflow rather than drop: the thread is there to
        send, the last send succeeded, and the one under way (if any) is not stalled."""
        if self._closed.is_set() or not self._answering:
            return False
        since = self._sending_since
        return since is None or time.monotonic() - since < self.stall_seconds

    @property
    def spooled(self) -> int:
        """Values held for MLflow: pending, or unsent after a failed call."""
        return self._values  # one int, read without the lock by the heartbeat

    @property
    def undelivered(self) -> int:
        """Values that did not reach MLflow: dropped, or still unsent (after a failed close)."""
        with self._lock:
            return self.dropped + self._values

    def add_history(self, history: Mapping[str, list[float]], first_step: int = 0) -> None:
        """Queue a checkpoint's history (``history[key][e]`` is step ``first_step + e``): the
        steps an earlier attempt computed but may not have delivered before it died."""
        epochs = max((len(values) for values in history.values()), default=0)
        for e in range(epochs):
            step = first_step + e
            if not logs_epoch(step, self.log_every, self.epochs or step + 1):
                continue
            metrics = {k: v[e] for k, v in history.items() if e < len(v)}
            metrics = {k: v for k, v in metrics.items() if not self.logged.has(k, step)}
            if metrics:
                self.add(step, metrics)

    def _drop(self, count: int) -> None:
        if not self.dropped:
            log.error(
                "MLflow spool of run %s is full (%d values) and MLflow does not answer: "
                "dropping metrics", self.run_id, self.max_values,
            )  # fmt: skip
        self.dropped += count

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """The training loop's callback: the epoch's metrics at step = epoch, if it logs it."""
        if logs_epoch(epoch, self.log_every, self.epochs or epoch + 1):
            self.add(epoch, metrics)

    def flush(self) -> None:
        """Send everything added so far."""
        with self._lock:
            pending, self._pending = self._pending, []
        with self._send_lock:
            added = _as_metrics(pending, self.logged)
            self._unsent.extend(added)
            self._forget(sum(len(m) for _, _, m in pending) - len(added))
            while self._unsent:
                chunk = self._unsent[:MAX_METRICS_PER_BATCH]
                self._sending_since = time.monotonic()
                try:
                    if self._send is None:
                        log_metrics(self.client, self.run_id, chunk)
                    else:
                        self._send(self.run_id, chunk)
                except Exception:
                    self._answered(False)
                    raise
                finally:
                    self._sending_since = None
                self._answered(True)
                del self._unsent[: len(chunk)]
                self._forget(len(chunk))

    def _answered(self, answered: bool) -> None:
        with self._space:
            self._answering = answered
            self._space.notify_all()

    def _forget(self, count: int) -> None:
        with self._space:
            self._values -= count
            self._space.notify_all()

    def discard(self) -> None:
        """Stop the thread and send nothing more (the job is another worker's now)."""
        with self._lock:
            self._pending = []
        with self._send_lock:
            self._unsent = []
        self._closed.set()
        self._wake.set()
        self._answered(False)  # nobody waits for a buffer that sends nothing more

    def flush_soon(self) -> None:
        """Have the thread send what is pending now, without waiting for it: the server stores
        ~1000 metrics in ~0.3 s, time the caller can spend on something else (the artifacts)."""
        self._wake.set()

    def close(self) -> None:
        """Send everything (raising if that fails) and stop the thread."""
        self._closed.set()
        self._wake.set()
        self._thread.join()
        self.flush()

    def _run(self) -> None:
        pause, failing = self.flush_seconds, False
        while not self._closed.is_set():
            self._wake.wait(pause)
            self._wake.clear()
            try:
                self.flush()
            except Exception as error:  # kept in _unsent: the next flush tries again
                if not failing:
                    log.warning("MLflow unreachable: metrics spooled until it answers: %s", error)
                failing, pause = True, min(2 * pause, 10.0)  # no hammering a server that is down
                continue
            if failing:
                log.warning("MLflow answers again: spooled metrics sent")
            failing, pause = False, self.flush_seconds


def _as_metrics(
    pending: Iterable[tuple[int, int, Mapping[str, float]]], logged: Logged
) -> list[MetricRow]:
    highest, missing = logged.highest, logged.missing  # Logged.has, inlined: a value each
    return [
        (key, float(value), timestamp, step)
        for step, timestamp, metrics in pending
        for key, value in metrics.items()
        if value is not None and (step > highest.get(key, -1) or step in missing.get(key, ()))
    ]
