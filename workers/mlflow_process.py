"""The MLflow calls made while a job trains, sent by a process of their own.

While the network trains, a worker sends its metrics every second and the run's first artifacts
(10 files, which the helper also writes: workers/artifacts.py). Sent from threads of the training
process, every HTTP request hands the GIL to and fro with the training loop at each of its socket
waits, and costs the training more than from another process (docs/benchmarks.md, 'Measured by
hand'). So these calls go over a pipe, one message each (a whole folder of artifacts included), to a
helper process that owns an MlflowClient and calls the same functions.

The helper is a new Python process (``python -m workers.mlflow_process``), not a fork: a
forked child would share the parent's pooled HTTP connections. It starts with the first call
(a worker's pool child starts it when the child starts) and again after it died. Each call
carries an id, so that the helper serves several at once and answers each as it ends. An error
comes back as what ``mlflow_retry.unreachable`` needs to tell "try again" from "refused": a
ConnectionError, or the MlflowException with its code.
"""

import itertools
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode
from mlflow.tracking import MlflowClient

import logs
from settings import Settings, get_settings
from workers import artifacts, heap, metrics_spool, mlflow_retry

log = logging.getLogger(__name__)


CALL_THREADS = 4  # calls the helper serves at once


class MlflowProcess:
    """``log_metrics`` and ``upload`` for runs of ``tracking_uri``, by the helper
    process. Safe to call from several threads, and served at once: a run's end sends its
    last metrics, its weights and its plot side by side."""

    def __init__(self, tracking_uri: str, timeout_seconds: float):
        self.tracking_uri = tracking_uri
        # A call the helper has not answered by then is given up and the helper killed.
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()  # starting, stopping and sending
        self._process: subprocess.Popen | None = None
        self._socket: socket.socket | None = None
        self._pipe: Connection | None = None
        self._waiting: dict[int, futures.Future] = {}  # the calls sent to this helper
        self._reader: threading.Thread | None = None
        self._ids = itertools.count()

    def log_metrics(self, run_id: str, rows: Sequence[metrics_spool.MetricRow]) -> None:
        """``metrics_spool.log_metrics`` for ``run_id``: at most MAX_METRICS_PER_BATCH rows."""
        self._call("log_metrics", run_id, rows)

    def upload(self, folders: artifacts.Folders, last: artifacts.Folders = ()) -> None:
        """``artifacts.upload``: every file under each folder to the artifacts at its URI,
        those of ``last`` after the others."""
        self._call("upload", folders, last)

    def write_first_artifacts(self, folder: str, part: artifacts.FirstPart) -> None:
        """``artifacts.write_and_upload_first_part``: the files known before training, written
        and uploaded by the helper, beside the training rather than before it."""
        self._call("write_first_artifacts", folder, part)

    def start(self) -> "MlflowProcess":
        with self._lock:
            self._start()
        return self

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _call(self, name: str, *args: Any) -> None:
        answer: futures.Future = futures.Future()
        with self._lock:
            self._start()
            call_id, pipe = next(self._ids), self._pipe
            self._waiting[call_id] = answer
            try:
                # With the job being logged, so that the helper's lines name it too.
                pipe.send((call_id, name, args, logs.current()))
            except OSError as error:  # the helper died, or stopped reading: a new one next
                self._stop()
                raise ConnectionError(f"MLflow helper process: {error!r}") from error
            except BaseException:  # the call could not be pickled: not the helper's fault
                self._waiting.pop(call_id, None)
                raise
        try:
            reply = answer.result(self.timeout_seconds)
        except futures.TimeoutError:
            with self._lock:
                if answer.done():  # answered meanwhile
                    reply = answer.result()
                else:
                    if self._pipe is pipe:  # the helper hangs: killed, a new one next
                        self._stop()
                    reply = ("unreachable", "",
                             f"TimeoutError: no answer in {self.timeout_seconds:g} s")  # fmt: skip
        _raise_if_error(reply)

    def _start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        if self._process is not None:
            log.warning(
                "MLflow helper process %d exited (%s): starting another",
                self._process.pid, self._process.returncode,
            )  # fmt: skip
        self._stop()
        ours, theirs = socket.socketpair()
        # A send to a helper that stopped reading fails after this, rather than blocking every
        # caller (and their timeouts) behind the lock.
        seconds = int(self.timeout_seconds) + 1
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))
        with theirs:
            # A process of its own, not multiprocessing's: a Celery pool child is daemonic,
            # and multiprocessing lets no daemonic process have children.
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", __name__, str(theirs.fileno()), self.tracking_uri],
                    pass_fds=[theirs.fileno()],
                )
            except BaseException:
                ours.close()
                raise
        self._socket, self._pipe = ours, Connection(os.dup(ours.fileno()))
        self._waiting = {}
        self._reader = threading.Thread(target=_read_answers, args=(self._pipe, self._waiting),
                                        name="mlflow-helper-answers", daemon=True)  # fmt: skip
        self._reader.start()

    def _stop(self) -> None:
        if self._socket is not None:
            # Shut down rather than closed under the reader blocked on it: it reads the end
            # and fails the calls still waiting; the helper exits at its next read.
            with suppress(OSError):  # shut down already
                self._socket.shutdown(socket.SHUT_RDWR)
            self._reader.join(5)
            self._socket.close()
            self._pipe.close()
        if self._process is not None:
            try:
                self._process.wait(1)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = self._socket = self._pipe = self._reader = None


def _read_answers(pipe: Connection, waiting: dict[int, futures.Future]) -> None:
    """Hand each answer read from ``pipe`` to its call; once the pipe ends (or an answer
    cannot be read), fail the calls still waiting as a lost helper (ConnectionError: the
    worker's retry logic tries again)."""
    lost: BaseException | None = None
    try:
        while True:
            call_id, reply = pipe.recv()
            answered = waiting.pop(call_id, None)
            if answered is not None:
                answered.set_result(reply)
    except BaseException as error:
        lost = error
    finally:
        for call_id in list(waiting):
            waiting.pop(call_id).set_result(("unreachable", "", f"helper lost: {lost!r}"))


def serve(pipe: Connection, tracking_uri: str) -> None:
    """The helper: answer each (call id, name, args, job) read from ``pipe``, up to
    CALL_THREADS at once, until the pipe closes; then finish the calls begun.

    It ignores SIGINT and SIGTERM, which a Ctrl-C or a stop sends to the worker's whole
    process group: it lives as long as its parent holds the pipe, so that a parent handing
    its job back can still send the last metrics."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from workers.celery_app import skip_absent_databricks_probes  # the worker's MLflow settings

    skip_absent_databricks_probes()
    logs.configure(get_settings().log_format)
    client = MlflowClient(tracking_uri)
    heap.freeze_startup_objects()
    calls = {
        "log_metrics": metrics_spool.log_metrics,
        "upload": artifacts.upload,
        "write_first_artifacts": artifacts.write_and_upload_first_part,
    }
    sending = threading.Lock()

    def answer(call_id: int, name: str, args: tuple, job: logs.JobContext | None) -> None:
        # Process-wide: the calls at once are one job's (a pool child runs one at a time).
        logs.set_current(job)
        try:
            calls[name](client, *args)
            reply = None
        except Exception as error:
            reply = _as_answer(error)
        with sending, suppress(OSError):  # the worker gone: nobody to answer
            pipe.send((call_id, reply))

    with ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="call") as pool:
        while True:
            try:
                call_id, name, args, job = pipe.recv()
            except (EOFError, OSError):
                return
            pool.submit(answer, call_id, name, args, job)


def _as_answer(error: Exception) -> tuple[str, str, str]:
    message = f"{type(error).__name__}: {error}"
    if mlflow_retry.unreachable(error):
        return ("unreachable", "", message)
    if isinstance(error, MlflowException):
        return ("refused", error.error_code, str(error.message))
    return ("error", "", message)


def _raise_if_error(answer: tuple[str, str, str] | None) -> None:
    if answer is None:
        return
    kind, code, message = answer
    if kind == "unreachable":
        raise ConnectionError(message)
    if kind == "refused":
        raise MlflowException(message, error_code=ErrorCode.Value(code))
    raise RuntimeError(message)


_shared: dict[tuple[str, float], MlflowProcess] = {}
_shared_lock = threading.Lock()


def for_settings(settings: Settings) -> MlflowProcess:
    """This process's helper for the settings' tracking URI (started on first use). It waits
    for an answer as long as the worker waits for MLflow, plus a few requests' timeouts. A
    worker has one; asked for another URI, the helper of the last one is stopped."""
    timeout = settings.mlflow_wait_seconds + 4 * settings.mlflow_timeout_seconds
    key = (settings.mlflow_tracking_uri, timeout)
    with _shared_lock:
        if key not in _shared:
            for other in _shared.values():
                other.close()
            _shared.clear()
            _shared[key] = MlflowProcess(settings.mlflow_tracking_uri, timeout)
        return _shared[key]


def start_for_pool_child() -> None:
    """A pool child starts its helper at once: its imports are done before a job."""
    for_settings(get_settings()).start()


if __name__ == "__main__":  # the helper: python -m workers.mlflow_process FD TRACKING_URI
    serve(Connection(int(sys.argv[1])), sys.argv[2])
