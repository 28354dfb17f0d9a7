"""A running job's heartbeat: progress and lease in SQL, and the answer to "should I stop?"."""

import logging
import threading
import time

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

import store.jobs
from settings import Settings
from store.db import transaction
from workers import shutdown

log = logging.getLogger(__name__)


class Progress:
    """The job's heartbeat, written by a thread of its own for the whole attempt: every
    ``settings.progress_seconds`` it records the epochs done and the latest cost that the
    training loop reported, and extends the lease. It beats while the attempt loads its data
    or waits for MLflow too, so a live worker keeps its job however long those take; a dead
    one stops beating and the reconciler takes the job back.

    The training loop's callback only stores two numbers (an epoch costs nothing more). A
    heartbeat that finds a cancel or a handoff requested, or the lease taken by another
    worker, makes ``should_stop`` true; so does a SIGTERM to this process (shutdown.py).
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        job_id: str,
        owner: str,
        settings: Settings,
    ):
        self.session_factory = session_factory
        self.job_id = job_id
        self.owner = owner
        self.period = settings.progress_seconds
        self.lease_seconds = settings.lease_seconds
        self.epochs_done: int | None = None  # None: leave the stored progress as it is
        self.cost: float | None = None
        self.cancel_requested = False
        self.lease_lost = False
        self.handoff_requested = False
        self.beats = 0
        self._last_beat = time.monotonic()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> "Progress":
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

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs_done, self.cost = epoch + 1, metrics["cost"]

    def _run(self) -> None:
        while not self._closed.wait(self.period):
            self.beat()

    def beat(self) -> None:
        try:
            with transaction(self.session_factory) as session:
                answer = store.jobs.heartbeat(
                    session,
                    self.job_id,
                    self.owner,
                    self.lease_seconds,
                    self.epochs_done,
                    self.cost,
                )
        except SQLAlchemyError as error:  # the lease outlives a few missed beats...
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
