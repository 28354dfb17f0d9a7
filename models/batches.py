"""How examples are cut into batches: for training (shuffled each epoch) and for scoring."""

from collections.abc import Iterator

import numpy as np

from models.labels import checked_labels, one_hot_labels, write_one_hot

# Columns that forward, cost and predict propagate at a time, so that scoring a big set costs
# the memory of one batch (models/memory.py counts it) rather than of the whole set.
MAX_SCORING_BATCH = 1024


def scoring_batch(m: int, batch_size: int | None = None) -> int:
    """Columns of an (n_x, m) set scored at a time: the training batch size (all m when None),
    at most MAX_SCORING_BATCH, at least 1."""
    return max(1, min(batch_size or m, m, MAX_SCORING_BATCH))


def scoring_columns(m: int, batch_size: int | None = None) -> Iterator[slice]:
    """The column slices of an (n_x, m) set, scoring_batch(m, batch_size) at a time."""
    size = scoring_batch(m, batch_size)
    return (slice(start, min(start + size, m)) for start in range(0, m, size))


class Batches:
    """The training data stored one example per row, served as batches in the API's layout.

    Data is stored one example per *row*, (m, n_x) C-contiguous, whatever the caller's
    X: (n_x, m) looks like: shuffling rows and gathering a batch of rows is cheap and
    W @ batchᵀ multiplies at full speed; shuffling columns of an (n_x, m) array is slower. A
    dataset from ``load_dataset`` is already stored this way (its X is a transposed view), so
    no copy is made of it at all.

    Each batch is (A0: (n_x, b) a transposed view of gathered rows, Y: (n[L], b) targets,
    labels: (b,)), in preallocated buffers reused every epoch: a batch of b comes back as the
    same A0 object every time, which lets the fast engine keep BLAS calls prepared for it.
    """

    def __init__(self, net, X: np.ndarray, Y: np.ndarray, batch_size: int | None):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != net.layer_dims[0]:
            raise ValueError(f"X must have shape ({net.layer_dims[0]}, m), got {X.shape}")
        # No copy when X is already a transposed view of row-stored data of the right dtype.
        self.rows = np.ascontiguousarray(X.T, dtype=net.dtype)  # (m, n_x)
        self.m = self.rows.shape[0]
        self.labels = checked_labels(Y, self.m, net.num_classes, "Y")  # (m,)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.size = self.m if batch_size is None else min(batch_size, self.m)
        self.net = net
        self._buffers: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._columns = np.arange(self.size)  # column indices of a batch's one-hot targets
        self._full_batch = None  # (A0, targets, labels) when a batch is the whole set

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple]:
        """The batches of one epoch, shuffled by ``rng`` unless the batch is the whole set."""
        if self.size == self.m:
            if self._full_batch is None:  # one A0 view, as for _buffers_for's batches
                self._full_batch = self.rows.T, self._targets(self.labels, None), self.labels
            yield self._full_batch
            return
        order = rng.permutation(self.m)
        for start in range(0, self.m, self.size):
            index = order[start : start + self.size]
            rows, A0, targets = self._buffers_for(index.size)
            self.rows.take(index, axis=0, out=rows, mode="clip")  # "clip": no extra copy
            labels = self.labels[index]
            yield A0, self._targets(labels, targets), labels

    def _buffers_for(self, b: int):
        """(rows: (b, n_x), A0: rows.T, targets: (n[L], b)) for batches of b."""
        if b not in self._buffers:
            net = self.net
            rows = np.empty((b, net.layer_dims[0]), net.dtype)
            # The targets C-ordered, as the output's A_out: A_out - Y runs along both's memory.
            targets = np.empty((net.layer_dims[-1], b), net.dtype)
            self._buffers[b] = rows, rows.T, targets
        return self._buffers[b]

    def _targets(self, labels: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        net = self.net
        if net.output.name == "softmax" and out is not None:
            return write_one_hot(labels, out, self._columns)  # labels checked in __init__
        if net.output.name == "softmax":
            return one_hot_labels(labels, net.layer_dims[-1], net.dtype, out=out)
        if out is None:
            return labels[None, :].astype(net.dtype)
        out[0] = labels
        return out
