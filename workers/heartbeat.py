"""A running job's heartbeat: progress and lease in SQL, and the answer to "should I stop?"."""

import logging
import threading
import time
from typing import Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

import store.jobs
from settings import Settings
from workers import shutdown

log = logging.getLogger(__name__)


class Spool(Protocol):
    """What the heartbeat reports of the metrics buffer (metrics_spool.MetricsBuffer)."""

    @property
    def spooled(self) -> int: ...


class Heartbeat:
    """The job's heartbeat, written by a thread of its own for the whole attempt: every
    ``settings.progress_seconds`` it records the epochs done and the latest cost that the
    training loop reported, and extends the lease. It beats while the attempt loads its data
    or waits for MLflow too, so a live worker keeps its job however long those take; a dead
    one stops beating and the reconciler takes the job back.

    A beat is one statement, built once, on a connection that the heartbeat keeps in autocommit: one
    round trip to the database, where a transaction took five (pool ping, BEGIN, UPDATE, SELECT,
    COMMIT) and built its statements anew. The thread holds the GIL while it runs Python, so a
    cheaper beat is training's time back (docs/benchmarks.md, 'Measured by hand'). A heartbeat that
    finds a cancel or a handoff requested, or the lease taken by another worker, makes
    ``should_stop`` true; so does a SIGTERM to this process (shutdown.py). The training loop's
    callback only stores two numbers."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        job_id: str,
        owner: str,
        settings: Settings,
    ):
        self.engine = session_factory.kw["bind"]
        self._connection: Connection | None = None  # autocommit, opened at the first beat
        self.job_id = job_id
        self.owner = owner
        self.period = settings.progress_seconds
        self.lease_seconds = settings.lease_seconds
        self.epochs_done: int | None = None  # None: leave the stored progress as it is
        self.cost: float | None = None
        self.spool: Spool | None = None  # the attempt's metrics buffer, once it has one
        self.cancel_requested = False
        self.lease_lost = False
        self.handoff_requested = False
        self.beats = 0
        self._last_beat = time.monotonic()  # of the last beat that reached the database
        self._beating = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def close(self, final_beat: bool = True) -> None:
        """Stop the thread and, unless told not to, record the last progress."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join()
        if final_beat:
            self.beat()
        with self._beating:
            self._close_connection()

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs_done, self.cost = epoch + 1, metrics["cost"]

    def _run(self) -> None:
        while not self._closed.wait(self.period):
            self.beat()

    def beat(self) -> None:
        with self._beating:  # the thread's, and the caller's at start and close
            try:
                if self._connection is None:
                    self._connection = self.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT"
                    )
                answer = store.jobs.heartbeat(
                    self._connection,
                    self.job_id,
                    self.owner,
                    self.lease_seconds,
                    self.epochs_done,
                    self.cost,
                    self.spool.spooled if self.spool is not None else None,
                )
            except SQLAlchemyError as error:  # the lease outlives a few missed beats...
                self._close_connection()  # the next beat starts from a fresh one
                log.warning("job %s: heartbeat failed, will retry: %s", self.job_id, error)
                # ... but not a lease's worth: by then the reconciler may have given the job to
                # another worker, which must be the only one to train it and log its metrics.
                if time.monotonic() - self._last_beat > self.lease_seconds - self.period:
                    self.lease_lost = True
                return
            self._last_beat = time.monotonic()
            self.beats += 1
            self.cancel_requested = answer.cancel_requested
            self.lease_lost = not answer.still_owner
            self.handoff_requested = answer.handoff_requested

    def _close_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except SQLAlchemyError as error:
                log.debug("heartbeat connection not closed cleanly: %s", error)
            self._connection = None

    def should_stop(self) -> bool:
        return self.stop_reason() is not None

    def stop_reason(self) -> str | None:
        """Why training should stop now: "lost" (the lease is another worker's), "cancelled",
        "handoff" (this worker is shutting down), or None."""
        if self.lease_lost:
            return "lost"
        if self.cancel_requested:
            return "cancelled"
        if self.handoff_requested or shutdown.requested.is_set():
            return "handoff"
        return None
