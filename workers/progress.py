"""A running job's heartbeat: progress and lease in SQL, and the answer to "should I stop?"."""

import logging
import time

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

import store.jobs
from settings import Settings
from store.db import transaction
from workers import shutdown

log = logging.getLogger(__name__)


class Progress:
    """The training loop's callback that writes a heartbeat every ``settings.progress_seconds``
    (and after the last epoch): the epochs done, the latest cost, a longer lease.

    Between heartbeats an epoch costs one clock read. A heartbeat that finds a cancel or a
    handoff requested, or the lease taken by another worker, makes ``should_stop`` true; so
    does a SIGTERM to this process (workers/shutdown.py).
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        job_id: str,
        owner: str,
        settings: Settings,
        epochs: int,
    ):
        self.session_factory = session_factory
        self.job_id = job_id
        self.owner = owner
        self.period = settings.progress_seconds
        self.lease_seconds = settings.lease_seconds
        self.last_epoch = epochs - 1
        self.next_beat = 0.0  # the first epoch beats at once: progress shows from the start
        self.cancel_requested = False
        self.lease_lost = False
        self.handoff_requested = False
        self.beats = 0

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        if now < self.next_beat and epoch != self.last_epoch:
            return
        self.next_beat = now + self.period
        self.beat(epoch + 1, metrics["cost"])

    def beat(self, epochs_done: int, cost: float) -> None:
        try:
            with transaction(self.session_factory) as session:
                answer = store.jobs.heartbeat(
                    session, self.job_id, self.owner, self.lease_seconds, epochs_done, cost
                )
        except SQLAlchemyError as error:  # the lease outlives a few missed beats
            log.warning("job %s: heartbeat failed, will retry: %s", self.job_id, error)
            return
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
