"""Shaping and scaling examples, one per column: X (n_x, m), Y (1, m) or one-hot (k, m).

Every X returned here is the transpose view of a C-contiguous (m, n_x) array (see dataset.py),
so that slicing and shuffling examples stays a row operation in memory.
"""

import math

import numpy as np

# A feature whose spread is within rounding of its mean is constant; dividing by that noise would
# blow it up to ±1 instead of leaving it at 0.
CONSTANT_TOLERANCE = 8 * np.finfo(np.float64).eps


def _as_float(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    return X if X.dtype.kind == "f" else X.astype(np.float32)


def _row_stored(rows: np.ndarray) -> np.ndarray:
    """rows (m, n) -> (n, m), the transpose view of a C-contiguous copy if needed."""
    return np.ascontiguousarray(rows).T


def flatten(images: np.ndarray) -> np.ndarray:
    """images (m, h, w[, c]) or any (m, ...) -> X (n_x, m), n_x = h*w*c, row-stored.

    Example i is column ``X[:, i] == images[i].ravel()``.
    """
    images = np.asarray(images)
    if images.ndim < 1:
        raise ValueError("images must be (m, ...), got a scalar")
    return _row_stored(images.reshape(len(images), math.prod(images.shape[1:])))


def scale_pixels(X: np.ndarray, max_value: float, dtype=None) -> np.ndarray:
    """X (n_x, m) with values in [0, max_value] -> X / max_value in [0, 1], same layout.

    dtype: of the result; default X's if floating, else float32.
    """
    if not max_value > 0:
        raise ValueError(f"max_value must be positive, got {max_value}")
    X = np.asarray(X)
    if X.size and (X.min() < 0 or X.max() > max_value):
        raise ValueError(f"values must lie in [0, {max_value}], got [{X.min()}, {X.max()}]")
    if dtype is None:
        dtype = X.dtype if X.dtype.kind == "f" else np.float32
    rows = np.divide(X.T, max_value, dtype=dtype)
    return _row_stored(rows)


def standardize(
    X: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero mean, unit variance per feature.

    X: (n_x, m). mean, std: (n_x, 1), computed from X over its m examples when None (pass the
    training set's to transform validation and test sets alike).
    Returns (X_std (n_x, m) row-stored, mean (n_x, 1), std (n_x, 1)); a std of 0 (a constant
    feature) is returned and used as 1, so that feature becomes 0.
    """
    X = _as_float(X)
    n_x = X.shape[0]
    rows = X.T
    if mean is None:
        mean = rows.mean(axis=0, dtype=np.float64).reshape(n_x, 1)
    if std is None:
        std = rows.std(axis=0, dtype=np.float64).reshape(n_x, 1)
    mean, std = np.asarray(mean), np.asarray(std)
    for name, stat in (("mean", mean), ("std", std)):
        if stat.shape != (n_x, 1):
            raise ValueError(f"{name} must be ({n_x}, 1), got {stat.shape}")
    constant = (std == 0) | (std <= CONSTANT_TOLERANCE * np.abs(mean))
    std = np.where(constant, 1, std).astype(X.dtype)
    mean = mean.astype(X.dtype)
    return _row_stored((rows - mean.T) / std.T), mean, std


def train_val_split(
    X: np.ndarray, Y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out a random ``fraction`` of the m examples, the same ones for the same seed.

    X: (n_x, m); Y: (1, m) or one-hot (k, m); fraction in [0, 1).
    Returns X_train (n_x, m - v), Y_train, X_val (n_x, v), Y_val with v = round(fraction * m),
    kept below m so training keeps an example; each part in its original order, and every
    part row-stored (the transpose view of a C-contiguous array), Y included.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[1]:
        raise ValueError(f"X (n_x, m) and Y (k, m) must share m, got {X.shape} and {Y.shape}")
    m = X.shape[1]
    n_val = min(round(fraction * m), max(m - 1, 0))
    is_val = np.zeros(m, dtype=bool)
    is_val[np.random.default_rng(seed).permutation(m)[:n_val]] = True
    rows, labels = X.T, Y.T
    return (
        _row_stored(rows[~is_val]),
        _row_stored(labels[~is_val]),
        _row_stored(rows[is_val]),
        _row_stored(labels[is_val]),
    )


def one_hot(Y: np.ndarray, k: int, dtype="float32") -> np.ndarray:
    """Y (1, m) class indices in 0..k-1 -> (k, m) one-hot, row-stored like X.

    Column i is all zeros but a 1 in row ``Y[0, i]``.
    """
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[0] != 1:
        raise ValueError(f"Y must be (1, m), got {Y.shape}")
    if Y.dtype.kind not in "iu":
        raise ValueError(f"Y must hold integer class indices, got {Y.dtype}")
    if Y.size and (Y.min() < 0 or Y.max() >= k):
        raise ValueError(f"class indices must lie in 0..{k - 1}, got [{Y.min()}, {Y.max()}]")
    return _row_stored(np.eye(k, dtype=dtype)[Y[0]])
