"""The worker's CheckpointWriter: checkpoints written by a thread of their own, the newest
first in line, each recorded in SQL, without the training loop waiting for the disk or the
database; nothing written once the lease is lost."""

import threading

import numpy as np

import store.jobs
from models import Checkpoint
from store.db import transaction
from tests.workers.helpers import FACES_LOGREG, create_job, get_job, with_experiment
from workers.checkpoints.local import CheckpointStore
from workers.checkpoints.writer import CheckpointWriter

OWNER = "test-worker/1"


class SlowDisk(CheckpointStore):
    """A real CheckpointStore whose saves wait until ``ready`` is set, as on a slow disk."""

    def __init__(self, folder):
        super().__init__(folder)
        self.ready = threading.Event()
        self.written: list[int] = []

    def save(self, job_id, checkpoint, prune=True):
        if not self.ready.wait(10):
            raise TimeoutError("the test never let the disk write")
        saved = super().save(job_id, checkpoint, prune)
        self.written.append(saved.epoch)
        return saved


def running_job(session_factory) -> str:
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    with transaction(session_factory) as session:
        assert store.jobs.claim(session, job_id, OWNER, lease_seconds=30) is not None
    return job_id


def checkpoint(epoch: int) -> Checkpoint:
    return Checkpoint(
        epoch=epoch, params={"W1": np.full((1, 3), float(epoch)), "b1": np.ones((1, 1))}
    )


def test_checkpoints_are_written_in_the_background_newest_last_and_close_waits_for_them(
    tmp_path, session_factory
):
    job_id = running_job(session_factory)
    disk = SlowDisk(tmp_path / "checkpoints")
    writer = CheckpointWriter(disk, session_factory, job_id, OWNER)

    for epoch in (100, 200, 300):
        writer.on_checkpoint(checkpoint(epoch))  # returns although the disk cannot write yet
    assert get_job(session_factory, job_id).checkpoint_epoch is None
    assert not (disk.folder / job_id).exists()

    disk.ready.set()
    writer.close()

    job = get_job(session_factory, job_id)
    newest = disk.load_latest(job_id)
    assert (job.checkpoint_epoch, newest.epoch, writer.saved_epoch) == (300, 300, 300)
    assert job.checkpoint_uri.endswith(f"-{job.checkpoint_sha256}.npz")
    np.testing.assert_array_equal(newest.params["W1"], np.full((1, 3), 300.0))
    # The one being written when the others came, then only the newest of those waiting.
    assert disk.written[-1] == 300 and disk.written == sorted(disk.written)
    assert len(disk.written) <= 2, disk.written


def test_nothing_is_written_once_the_lease_is_lost(tmp_path, session_factory):
    job_id = running_job(session_factory)
    lost = threading.Event()
    disk = CheckpointStore(tmp_path / "checkpoints")
    writer = CheckpointWriter(disk, session_factory, job_id, OWNER, lease_lost=lost.is_set)
    writer.on_checkpoint(checkpoint(100))
    writer.close()
    assert get_job(session_factory, job_id).checkpoint_epoch == 100

    lost.set()
    assert writer.save(checkpoint(200)) is False
    assert get_job(session_factory, job_id).checkpoint_epoch == 100
    assert disk.load_latest(job_id).epoch == 100


def test_a_worker_that_lost_the_job_unknowingly_leaves_no_file_and_prunes_none(
    tmp_path, session_factory
):
    job_id = running_job(session_factory)  # held by OWNER, the new owner
    disk = CheckpointStore(tmp_path / "checkpoints")
    owner = CheckpointWriter(disk, session_factory, job_id, OWNER)
    assert owner.save(checkpoint(100)) and owner.save(checkpoint(200))
    stale = CheckpointWriter(disk, session_factory, job_id, "stale-worker/2")  # lease_lost: no

    assert stale.save(checkpoint(300)) is False

    epochs = sorted(int(path.name.split("-")[1]) for path in (disk.folder / job_id).iterdir())
    assert epochs == [100, 200]
    assert get_job(session_factory, job_id).checkpoint_epoch == 200
    assert stale.saved_epoch is None


def test_a_checkpoint_written_after_the_job_ended_is_removed_with_its_folder(
    tmp_path, session_factory
):
    job_id = running_job(session_factory)
    with transaction(session_factory) as session:
        assert store.jobs.finish(session, job_id, OWNER, "cancelled")
    disk = CheckpointStore(tmp_path / "checkpoints")
    writer = CheckpointWriter(disk, session_factory, job_id, OWNER)

    assert writer.save(checkpoint(100)) is False
    assert not (disk.folder / job_id).exists()


def test_a_checkpoint_that_cannot_be_written_is_logged_and_a_hand_back_still_saves_after_close(
    tmp_path, session_factory, caplog
):
    job_id = running_job(session_factory)
    blocked = tmp_path / "checkpoints"
    blocked.write_text("a file where the folder should be")
    writer = CheckpointWriter(CheckpointStore(blocked), session_factory, job_id, OWNER)

    writer.on_checkpoint(checkpoint(100))
    writer.close()  # does not raise: the training goes on without that checkpoint
    assert "checkpoint at epoch 100 not saved" in caplog.text
    assert get_job(session_factory, job_id).checkpoint_epoch is None

    blocked.unlink()
    assert writer.save(checkpoint(150))  # the hand-back's, written by the caller after close()
    assert get_job(session_factory, job_id).checkpoint_epoch == 150


def test_the_checkpoint_after_the_last_epoch_is_not_written(tmp_path, session_factory):
    job_id = running_job(session_factory)
    disk = CheckpointStore(tmp_path / "checkpoints")
    writer = CheckpointWriter(disk, session_factory, job_id, OWNER, epochs=300)

    for epoch in (100, 200, 300):
        writer.on_checkpoint(checkpoint(epoch))
    writer.close()

    assert disk.load_latest(job_id).epoch == writer.saved_epoch == 200
    assert writer.save(checkpoint(300))  # a hand-back at the last epoch still saves its own
