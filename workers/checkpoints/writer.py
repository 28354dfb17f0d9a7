"""The training loop's callback that saves checkpoints on a thread of its own and records them."""

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy import select

import store.jobs
from models.serialization import Checkpoint
from store.db import transaction
from store.tables import Job

if TYPE_CHECKING:
    from workers.checkpoints.artifacts import ArtifactCheckpointStore
    from workers.checkpoints.local import CheckpointStore

log = logging.getLogger(__name__)


class CheckpointWriter:
    """The training loop's callback that stores each checkpoint where any worker finds it and
    records it (epoch, checksum) in SQL.

    A thread of its own writes them, so the training loop never waits on the disk's fsync or
    the database. Only the newest checkpoint waits its turn: one that a newer one overtook is
    never written (each supersedes the last), which bounds memory and what ``close()`` waits
    for. Nothing is written once ``lease_lost()`` says the job is another worker's. A
    checkpoint that cannot be written costs only the work since the previous one, so an error
    is logged, not raised."""

    def __init__(
        self,
        checkpoints: "CheckpointStore | ArtifactCheckpointStore",
        session_factory,
        job_id: str,
        owner: str,
        lease_lost: Callable[[], bool] = lambda: False,
        epochs: int | None = None,
    ):
        self.checkpoints = checkpoints
        self.epochs = epochs
        self.session_factory = session_factory
        self.job_id = job_id
        self.owner = owner
        self.lease_lost = lease_lost
        self.saved_epoch: int | None = None  # of the last checkpoint written and recorded
        self._newest: Checkpoint | None = None
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gradq-checkpoints")

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Have ``checkpoint`` (a copy the loop no longer touches) written soon; not the one
        after the last of the job's ``epochs``, which nothing would resume from: the job ends
        with its outcome (a worker lost before that retrains from the checkpoint before)."""
        if checkpoint.epoch == self.epochs:
            return
        with self._lock:
            self._newest = checkpoint
        self._thread.submit(self._write_newest)

    def _write_newest(self) -> None:
        with self._lock:
            checkpoint, self._newest = self._newest, None
        if checkpoint is not None:  # None: a later call already wrote it
            self.save(checkpoint)

    def save(self, checkpoint: Checkpoint) -> bool:
        """Write ``checkpoint`` now; True if it is on disk and recorded as the job's newest."""
        if self.lease_lost():
            return False
        try:
            # Older files are pruned only once SQL took this one: a worker that lost the job
            # without knowing it yet must not prune, or leave behind, the new owner's files.
            saved = self.checkpoints.save(self.job_id, checkpoint, prune=False)
            with transaction(self.session_factory) as session:
                recorded = store.jobs.record_checkpoint(
                    session, self.job_id, self.owner, saved.uri, saved.epoch, saved.sha256
                )
                # Not recorded: the job is another worker's, or over. Same name as its newest:
                # the new owner wrote the same bytes, and the file is its.
                theirs = not recorded and saved.uri == session.scalar(
                    select(Job.checkpoint_uri).where(Job.id == self.job_id)
                )
        except Exception:
            log.exception("job %s: checkpoint at epoch %d not saved", self.job_id, checkpoint.epoch)
            return False
        if recorded:
            self.saved_epoch = saved.epoch
        elif not theirs:
            log.warning("job %s is not this worker's: checkpoint removed", self.job_id)
        try:  # what is not removed now goes with the job's other files when it ends
            if recorded:
                self.checkpoints.prune(self.job_id)
            elif not theirs:
                self.checkpoints.remove(saved)
        except Exception:
            log.exception("job %s: older checkpoints not removed", self.job_id)
        return recorded

    def close(self) -> None:
        """Wait until the checkpoint pending, if any, is written (or failed)."""
        self._thread.shutdown(wait=True)
