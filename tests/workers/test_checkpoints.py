"""Checkpoints on disk: named by their checksum, the newest two kept, a corrupt newest one
skipped for the one before, and a run resumed from them bit for bit."""

import hashlib
import re

import numpy as np
import pytest

from models import Checkpoint, Network, train
from workers.checkpoints.local import CheckpointStore

JOB = "0123456789abcdef0123456789abcdef"
SETTINGS = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8, "seed": 5}


def data(m=40, n_x=4, seed=0):
    """Random inputs X: (n_x, m) and binary labels Y: (1, m)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_x, m)), rng.integers(0, 2, (1, m))


def network() -> Network:
    return Network([4, 5, 1], output="sigmoid", seed=2, dtype="float64")


class Saver:
    """The training loop's checkpoint callback, saving into a CheckpointStore."""

    def __init__(self, store: CheckpointStore, job_id: str = JOB):
        self.store, self.job_id = store, job_id
        self.saved = []

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.saved.append(self.store.save(self.job_id, checkpoint))


class WorkerCrashError(Exception):
    """The worker process died."""


class CrashAfter:
    """A worker that dies once ``epoch`` ended."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, metrics) -> None:
        if epoch == self.epoch:
            raise WorkerCrashError


def saved_checkpoints(tmp_path, epochs: int, every: int = 1) -> tuple[CheckpointStore, Saver]:
    store = CheckpointStore(tmp_path / "checkpoints")
    saver = Saver(store)
    X, Y = data()
    train(network(), X, Y, epochs=epochs, checkpoint_every=every, callbacks=[saver], **SETTINGS)
    return store, saver


def newest_file(store: CheckpointStore):
    return max((store.folder / JOB).iterdir(), key=lambda path: path.name)


def test_a_saved_checkpoint_is_named_by_its_epoch_and_the_sha256_of_its_bytes(tmp_path):
    _, saver = saved_checkpoints(tmp_path, epochs=3, every=3)

    saved = saver.saved[0]
    match = re.fullmatch(r"epoch-(\d{9})-([0-9a-f]{64})\.npz", saved.path.name)
    assert match is not None, saved.path.name
    assert (int(match[1]), saved.epoch) == (3, 3)
    assert match[2] == saved.sha256 == hashlib.sha256(saved.path.read_bytes()).hexdigest()
    assert saved.path.parent == tmp_path / "checkpoints" / JOB


def test_only_the_newest_two_checkpoints_are_kept(tmp_path):
    store, saver = saved_checkpoints(tmp_path, epochs=5)

    assert [s.epoch for s in saver.saved] == [1, 2, 3, 4, 5]
    kept = sorted(path.name for path in (store.folder / JOB).iterdir())
    assert kept == [saver.saved[3].path.name, saver.saved[4].path.name]


def test_load_latest_returns_the_newest_checkpoint(tmp_path):
    store, _ = saved_checkpoints(tmp_path, epochs=4)

    latest = store.load_latest(JOB)

    assert latest.epoch == 4
    assert len(latest.history["cost"]) == 4


def flip_bytes(path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def unreadable_with_its_checksum(path) -> None:
    """Whole bytes that are no checkpoint, named with their own checksum."""
    junk = b"not a checkpoint"
    path.unlink()
    epoch = path.name.split("-")[1]
    (path.parent / f"epoch-{epoch}-{hashlib.sha256(junk).hexdigest()}.npz").write_bytes(junk)


@pytest.mark.parametrize("damage", [flip_bytes, truncate, unreadable_with_its_checksum])
def test_a_corrupt_newest_checkpoint_is_skipped_for_the_one_before(tmp_path, damage):
    store, _ = saved_checkpoints(tmp_path, epochs=4)
    damage(newest_file(store))

    assert store.load_latest(JOB).epoch == 3


def test_no_valid_checkpoint_loads_as_none(tmp_path):
    store, _ = saved_checkpoints(tmp_path, epochs=2)
    for path in (store.folder / JOB).iterdir():
        flip_bytes(path)

    assert store.load_latest(JOB) is None
    assert store.load_latest("fedcba") is None  # a job that never saved one


def test_discard_removes_the_jobs_checkpoints_only(tmp_path):
    store, _ = saved_checkpoints(tmp_path, epochs=2)
    other = Saver(store, job_id="abc")
    X, Y = data()
    train(network(), X, Y, epochs=1, checkpoint_every=1, callbacks=[other], **SETTINGS)

    store.discard(JOB)

    assert not (store.folder / JOB).exists()
    assert store.load_latest(JOB) is None
    assert store.load_latest("abc").epoch == 1
    store.discard(JOB)  # twice: nothing left to remove, no error


@pytest.mark.parametrize("job_id", ["../x", "ABCDEF", "", "abc/def"])
def test_a_job_id_that_is_not_lowercase_hex_is_refused(tmp_path, job_id):
    store, saver = saved_checkpoints(tmp_path / "job", epochs=1)
    checkpoint = store.load_latest(JOB)

    for use in (
        lambda: store.save(job_id, checkpoint),
        lambda: store.load_latest(job_id),
        lambda: store.discard(job_id),
    ):
        with pytest.raises(ValueError, match="not a job id"):
            use()
    assert sorted(path.name for path in tmp_path.rglob("*.npz")) == [saver.saved[0].path.name]


@pytest.mark.parametrize("corrupt_newest", [False, True])
def test_a_run_resumed_from_the_loaded_checkpoint_ends_bit_identical(tmp_path, corrupt_newest):
    X, Y = data()
    whole = network()
    whole_history = train(whole, X, Y, epochs=12, **SETTINGS)
    store = CheckpointStore(tmp_path / "checkpoints")
    with pytest.raises(WorkerCrashError):
        train(
            network(), X, Y, epochs=12, checkpoint_every=3,
            callbacks=[Saver(store), CrashAfter(epoch=7)], **SETTINGS,
        )  # fmt: skip
    if corrupt_newest:
        flip_bytes(newest_file(store))

    checkpoint = store.load_latest(JOB)
    resumed = network()  # a fresh worker builds the network again
    history = train(resumed, X, Y, epochs=12, resume_from=checkpoint, **SETTINGS)

    assert checkpoint.epoch == (3 if corrupt_newest else 6)
    assert history == whole_history
    for key in whole.params:
        assert np.array_equal(resumed.params[key], whole.params[key]), key
