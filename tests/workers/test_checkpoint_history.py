"""The worker's checkpoints keep the run's history beside them, appended a checkpoint at a
time: what a save writes does not grow with the epochs done; a checkpoint reads back the
rows of its own epochs, from its own worker's file; damaged rows are caught."""

import re
from pathlib import Path

import numpy as np
import pytest

from models import Checkpoint
from workers.checkpoints.local import CheckpointStore

JOB = "0123456789abcdef0123456789abcdef"
NAMES = ("cost", "grad_norm.W1", "learning_rate", "train_accuracy", "val_accuracy")


def checkpoint(epoch: int, seed: int = 0) -> Checkpoint:
    """A checkpoint after ``epoch`` epochs whose history is the same for the same seed."""
    rng = np.random.default_rng(seed)
    values = rng.random((len(NAMES), 20_000))
    return Checkpoint(
        epoch=epoch,
        params={"W1": np.full((3, 4), float(epoch)), "b1": np.zeros((3, 1))},
        optimizer_state={"t": np.array(epoch)},
        rng_state=np.random.default_rng(1).bit_generator.state,
        history={name: row[:epoch] for name, row in zip(NAMES, values, strict=True)},
        config={"optimizer": "adam"},
    )


def written_bytes() -> int:
    """Bytes this process has passed to write(2) and its kin so far (Linux's /proc)."""
    text = Path("/proc/self/io").read_text()
    return int(re.search(r"^wchar: (\d+)$", text, re.MULTILINE)[1])


def bytes_of_save(store: CheckpointStore, saved: Checkpoint) -> int:
    before = written_bytes()
    store.save(JOB, saved)
    return written_bytes() - before


def test_a_save_at_epoch_10001_writes_what_one_at_epoch_11_writes(tmp_path):
    early, late = CheckpointStore(tmp_path / "a"), CheckpointStore(tmp_path / "b")
    early.save(JOB, checkpoint(10))
    late.save(JOB, checkpoint(10_000))

    after_10 = bytes_of_save(early, checkpoint(11))
    after_10000 = bytes_of_save(late, checkpoint(10_001))

    assert abs(after_10000 - after_10) <= 64, (after_10, after_10000)  # the old: +0.5 MB


def test_the_checkpoint_file_does_not_grow_with_the_epochs(tmp_path):
    store = CheckpointStore(tmp_path)
    small, big = store.save(JOB, checkpoint(10)), store.save(JOB, checkpoint(10_000))
    assert abs(big.path.stat().st_size - small.path.stat().st_size) <= 64


def test_the_newest_checkpoint_reads_back_with_every_epochs_history(tmp_path):
    store = CheckpointStore(tmp_path)
    for epoch in (100, 250, 400):
        store.save(JOB, checkpoint(epoch))

    loaded = store.load_latest(JOB)

    expected = checkpoint(400)
    assert loaded.epoch == 400
    assert {k: v.tolist() for k, v in loaded.history.items()} == {
        k: v.tolist() for k, v in expected.history.items()
    }


def damage_history_row(store: CheckpointStore, row: int) -> None:
    [history] = (store.folder / f"{JOB}.history").iterdir()
    data = bytearray(history.read_bytes())
    row_bytes = (len(NAMES) + 1) * 8
    data[row * row_bytes] ^= 0xFF
    history.write_bytes(bytes(data))


def test_a_damaged_history_row_skips_the_checkpoints_that_need_it(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(JOB, checkpoint(30))
    store.save(JOB, checkpoint(40))
    damage_history_row(store, 35)  # only the newest holds epoch 35

    assert CheckpointStore(tmp_path).load_latest(JOB).epoch == 30
    damage_history_row(store, 5)
    assert CheckpointStore(tmp_path).load_latest(JOB) is None


def test_each_worker_appends_to_a_history_file_of_its_own(tmp_path):
    first, second = CheckpointStore(tmp_path), CheckpointStore(tmp_path)
    first.save(JOB, checkpoint(20))
    resumed = second.load_latest(JOB)
    second.save(JOB, checkpoint(30, seed=0))
    first.save(JOB, checkpoint(25, seed=9))  # a worker that lost the job, not knowing it yet

    assert resumed.epoch == 20
    assert len(list((tmp_path / f"{JOB}.history").iterdir())) == 2
    newest = CheckpointStore(tmp_path).load_latest(JOB)
    assert newest.epoch == 30
    np.testing.assert_array_equal(newest.history["cost"], checkpoint(30).history["cost"])


def test_pruning_removes_the_history_files_no_kept_checkpoint_names(tmp_path):
    first, second = CheckpointStore(tmp_path), CheckpointStore(tmp_path)
    first.save(JOB, checkpoint(10))
    for epoch in (20, 30):
        second.save(JOB, checkpoint(epoch))

    [kept] = (tmp_path / f"{JOB}.history").iterdir()
    assert kept.name.startswith(second._token)
    assert second.load_latest(JOB).epoch == 30


@pytest.mark.parametrize("what", ["discard", "remove"])
def test_a_jobs_history_goes_with_its_checkpoints(tmp_path, what):
    store = CheckpointStore(tmp_path)
    saved = store.save(JOB, checkpoint(10))

    if what == "discard":
        store.discard(JOB)
    else:
        store.remove(saved)

    assert list(tmp_path.iterdir()) == []
