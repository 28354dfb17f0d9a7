"""Per-epoch metrics, appended by the training loop and sent to MLflow in batches by a thread
of their own, never one request per metric (DESIGN.md section 11). None is lost silently:
while MLflow answers, a full spool makes the training loop wait; only while it does not are
values dropped, and counted (``MetricsBuffer.undelivered``) for the job's event and run tag.
A resumed attempt skips the steps its run already has (``logged_steps``).
"""

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request_safe

from contract.metric_budget import logs_epoch

log = logging.getLogger(__name__)

# key, value, timestamp (ms), step, and for the final metrics the LoggedModel's id they belong to
MetricRow = tuple[str, float, int, int] | tuple[str, float, int, int, str]
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call (mlflow/utils/validation.py)
LOG_BATCH_ENDPOINT = "/api/2.0/mlflow/runs/log-batch"  # MLflow's REST API


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


def log_metrics(client: MlflowClient, run_id: str, rows: Sequence[MetricRow]) -> None:
    """``rows`` (at most MAX_METRICS_PER_BATCH) as one log_batch call.

    To a tracking server, the request is the JSON body of the REST API's ``runs/log-batch``, built
    here and sent the way MlflowClient sends it (its credentials, TLS, timeout and retries from the
    same MLFLOW_* settings), a third of the CPU of ``MlflowClient.log_batch``, which turns each
    value into a Metric, a protobuf and JSON twice (docs/benchmarks.md, 'Measured by hand'). That
    CPU is the worker's GIL, which the training loop waits for. Other tracking URIs (a local store)
    go through MlflowClient."""
    uri = client.tracking_uri
    if not uri.startswith(("http://", "https://")):
        client.log_batch(run_id, metrics=[Metric(*row[:4], model_id=_model(row)) for row in rows])
        return
    metrics = [
        {"key": key, "value": _json_double(value), "timestamp": timestamp, "step": step}
        | ({"model_id": row[4]} if len(row) > 4 else {})
        for row in rows
        for key, value, timestamp, step in (row[:4],)
    ]
    http_request_safe(
        get_default_host_creds(uri),
        LOG_BATCH_ENDPOINT,
        "POST",
        data=json.dumps({"run_id": run_id, "metrics": metrics}),
        extra_headers={"Content-Type": "application/json"},
    )


def _model(row: MetricRow) -> str | None:
    return row[4] if len(row) > 4 else None


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
    not a multiple of it (nor the last of ``epochs``) are not sent (contract/metric_budget.py).
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
        # (step, ms, metrics, model id or None)
        self._pending: list[tuple[int, int, Mapping[str, float], str | None]] = []
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

    def add(self, step: int, metrics: Mapping[str, float], model_id: str | None = None) -> None:
        """Queue ``metrics`` at ``step``, linked to the LoggedModel ``model_id`` if given; the
        mapping must not change afterwards. Waits while the buffer is full and MLflow answers."""
        entry = (step, int(time.time() * 1000), metrics, model_id)
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
            self._forget(sum(len(entry[2]) for entry in pending) - len(added))
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
    pending: Iterable[tuple[int, int, Mapping[str, float], str | None]], logged: Logged
) -> list[MetricRow]:
    highest, missing = logged.highest, logged.missing  # Logged.has, inlined: a value each
    rows: list[MetricRow] = [
        (key, float(value), timestamp, step)
        for step, timestamp, metrics, model_id in pending
        if model_id is None  # every epoch's: the hot path, kept to a plain tuple
        for key, value in metrics.items()
        if value is not None and (step > highest.get(key, -1) or step in missing.get(key, ()))
    ]
    return rows + [
        (key, float(value), timestamp, step, model_id)
        for step, timestamp, metrics, model_id in pending
        if model_id is not None  # the final metrics, once
        for key, value in metrics.items()
        if value is not None and not logged.has(key, step)
    ]
