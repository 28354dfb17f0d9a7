"""Class labels and the targets an output layer is trained against."""

import numpy as np


def labels_of(Y: np.ndarray) -> np.ndarray:
    """Class indices (m,) from labels (1, m) or one-hot columns (k, m)."""
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D, (1, m) labels or (k, m) one-hot; got shape {Y.shape}")
    labels = Y[0] if Y.shape[0] == 1 else Y.argmax(axis=0)
    return labels.astype(np.int64)


def one_hot_labels(labels: np.ndarray, k: int, dtype: np.dtype, out=None) -> np.ndarray:
    """One-hot columns (k, m) of class indices ``labels``: (m,), written into ``out`` if given."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be integer class indices of shape (m,), got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be in [0, {k}), got range {labels.min()}..{labels.max()}")
    if out is None:
        out = np.empty((k, labels.size), dtype)
    elif out.shape != (k, labels.size):
        raise ValueError(f"out must have shape {(k, labels.size)}, got {out.shape}")
    return write_one_hot(labels, out, np.arange(labels.size))


def write_one_hot(labels: np.ndarray, out: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """One-hot columns of ``labels``: (m,) into ``out``: (k, m), unchecked (one_hot_labels
    checks); columns: np.arange(m) or longer, which a caller may keep for batch after batch."""
    out.fill(0)
    out[labels, columns[: labels.size]] = 1
    return out


def checked_labels(Y, m: int, num_classes: int, name: str) -> np.ndarray:
    """Class indices (m,) of Y, refused unless there are m of them, each in [0, num_classes)."""
    labels = labels_of(Y)
    if labels.shape[0] != m:
        raise ValueError(f"{name} has {labels.shape[0]} examples, X has {m}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} labels must be in [0, {num_classes}) for this output, "
            f"got {labels.min()}..{labels.max()}"
        )
    return labels
