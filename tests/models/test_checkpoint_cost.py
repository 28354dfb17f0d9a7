"""What a checkpoint costs the training loop does not grow with the epochs done: it holds
views of the history, not a copy (checkpoint_every: 1 once made training quadratic)."""

import tracemalloc

import numpy as np

from models import Network, train


def data(m=40, n_x=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_x, m)), rng.integers(0, 2, (1, m))


class Allocations:
    """Bytes allocated while each checkpoint was taken: the peak above the end of its epoch
    (the one before it is still held then)."""

    def __init__(self):
        self.before = 0
        self.by_epoch: dict[int, int] = {}
        self.kept = {}

    def on_epoch_end(self, epoch, metrics):
        self.before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()

    def on_checkpoint(self, checkpoint):
        self.by_epoch[checkpoint.epoch] = tracemalloc.get_traced_memory()[1] - self.before
        if checkpoint.epoch == 10:
            self.kept = checkpoint


def test_a_checkpoint_at_epoch_3000_costs_what_one_at_epoch_10_costs():
    X, Y = data()
    allocations = Allocations()
    tracemalloc.start()
    try:
        train(
            Network([4, 5, 1], seed=2, dtype="float64"), X, Y, optimizer="gd",
            learning_rate=0.1, epochs=3000, X_val=X, Y_val=Y, checkpoint_every=1,
            callbacks=[allocations],
        )  # fmt: skip
    finally:
        tracemalloc.stop()

    early, late = allocations.by_epoch[10], allocations.by_epoch[3000]
    assert late <= early + 1024, (early, late)  # the old copy of 3000 epochs: ~170 KB


def test_a_checkpoints_history_stays_what_it_was_while_training_goes_on():
    X, Y = data()
    allocations = Allocations()
    history = train(
        Network([4, 5, 1], seed=2, dtype="float64"), X, Y, optimizer="gd", learning_rate=0.1,
        epochs=100, checkpoint_every=10, callbacks=[allocations],
    )  # fmt: skip

    kept = allocations.kept.history
    assert sorted(kept) == sorted(history)
    for name, values in kept.items():
        assert list(values) == history[name][:10], name
