"""The in-memory dataset, its errors, and the checks every reader shares.

Layout: the API shows one example per column, ``X: (n_x, m)``, ``Y: (1, m)``; memory holds one
example per row. Each ``X`` is the transpose view of a C-contiguous ``(m, n_x)`` array, because
shuffling and slicing rows is several times faster than columns, and ``W @ X`` runs at full speed
on the view.
"""

import hashlib
import importlib
import math
import os
from dataclasses import dataclass
from types import ModuleType

import numpy as np

INSTALL_HINT = "pip install 'gradq[datasets]'"


class DatasetError(ValueError):
    """A dataset source is missing, unreadable or inconsistent; the message names the file."""


class MissingDependencyError(ImportError):
    """An optional reader (Pillow, h5py, scikit-learn, scikit-image) is not installed."""


def require(module: str, needed_for: str) -> ModuleType:
    """Import an optional reader lazily, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{needed_for} needs the '{module.split('.')[0]}' package: {INSTALL_HINT}"
        ) from error


def float_dtype(dtype: str | np.dtype | type) -> np.dtype:
    """The requested floating dtype, or ValueError."""
    resolved = np.dtype(dtype)
    if resolved.kind != "f":
        raise ValueError(f"dtype must be a floating type such as 'float32', got {resolved}")
    return resolved


def _rows(X: np.ndarray) -> np.ndarray:
    """The (m, n_x) C-contiguous storage behind X: (n_x, m); copies only if X is not a view."""
    return np.ascontiguousarray(X.T)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Examples as columns, stored as rows.

    X: (n_x, m) float, the transpose view of a C-contiguous (m, n_x) array.
    Y: (1, m) int64 class indices 0..k-1.
    classes: k names, ``classes[i]`` is label i.
    image_shape: shape of one example before flattening, e.g. (25, 25), (64, 64, 3); (n_x,)
        for plain vectors.
    X_test, Y_test: (n_x, m_test) and (1, m_test), same layout, when the source ships a test split.
    """

    name: str
    X: np.ndarray
    Y: np.ndarray
    classes: tuple[str, ...]
    image_shape: tuple[int, ...]
    X_test: np.ndarray | None = None
    Y_test: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.X_test is None) != (self.Y_test is None):
            raise DatasetError(f"{self.name}: X_test and Y_test must be given together")
        if math.prod(self.image_shape) != self.X.shape[0]:
            raise DatasetError(
                f"{self.name}: image_shape {self.image_shape} does not hold n_x = {self.X.shape[0]}"
            )
        for x_name, y_name in (("X", "Y"), ("X_test", "Y_test")):
            X, Y = getattr(self, x_name), getattr(self, y_name)
            if X is None:
                continue
            if X.ndim != 2 or X.shape[0] != self.X.shape[0]:
                raise DatasetError(f"{self.name}: {x_name} must be (n_x, m), got {X.shape}")
            if Y.shape != (1, X.shape[1]):
                raise DatasetError(
                    f"{self.name}: {y_name} must be (1, {X.shape[1]}), got {Y.shape}"
                )
            # Frozen, so normalise through object.__setattr__: the row-stored layout is a promise.
            if not X.T.flags.c_contiguous:
                object.__setattr__(self, x_name, _rows(X).T)
            object.__setattr__(self, y_name, np.ascontiguousarray(Y, dtype=np.int64))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "image_shape", tuple(int(d) for d in self.image_shape))

    @property
    def n_x(self) -> int:
        """Features per example."""
        return self.X.shape[0]

    @property
    def m(self) -> int:
        """Training examples."""
        return self.X.shape[1]

    @property
    def num_classes(self) -> int:
        """k, the number of class names."""
        return len(self.classes)

    def sha256(self) -> str:
        """Hex digest of X (row-stored, little-endian), Y and the class names.

        Shapes and dtype go in too, so that reshaped or recast data hashes differently.
        """
        rows = np.ascontiguousarray(self.X.T, dtype=self.X.dtype.newbyteorder("<"))
        digest = hashlib.sha256()
        digest.update(f"{rows.dtype.str}{rows.shape}{self.image_shape}".encode())
        digest.update(rows.tobytes())
        digest.update(np.ascontiguousarray(self.Y, dtype="<i8").tobytes())
        digest.update("\0".join(self.classes).encode())
        return digest.hexdigest()


def check_classes(classes: tuple[str, ...], source: str | os.PathLike) -> tuple[str, ...]:
    """At least two distinct class names, else DatasetError."""
    if len(classes) < 2:
        raise DatasetError(
            f"{source}: a single class {list(classes)}; a classifier needs at least two"
        )
    if len(set(classes)) != len(classes):
        raise DatasetError(f"{source}: duplicate class names in {list(classes)}")
    return classes


def check_two_classes_present(
    Y: np.ndarray, classes: tuple[str, ...], source: str | os.PathLike
) -> None:
    """Y: (1, m) training labels, which must hold at least two of the classes, else DatasetError.

    Class names alone do not tell: labels 0..max name class 0 even when no example has it.
    """
    present = np.unique(Y)
    if present.size < 2:
        raise DatasetError(
            f"{source}: a single class among the labels (every example is "
            f"{classes[present[0]]!r}); a classifier needs examples of at least two"
        )


def pixels_as_float(x: np.ndarray, source: str | os.PathLike, dtype: np.dtype) -> np.ndarray:
    """x: (m, ...) uint8 (scaled by 1/255) or float (must be finite, kept) -> same shape, dtype."""
    if x.dtype == np.uint8:
        return np.divide(x, 255, dtype=dtype)
    if x.dtype.kind != "f":
        raise DatasetError(
            f"{source}: images have dtype {x.dtype}; expected uint8 pixels or float values"
        )
    with np.errstate(over="ignore"):  # a float64 beyond float32's range: refused just below
        values = x.astype(dtype, copy=False)
    if not np.isfinite(values).all():
        raise DatasetError(
            f"{source}: images contain non-finite values (NaN or inf, or beyond {dtype}'s range)"
        )
    return values


def integer_labels(y: np.ndarray, source: str | os.PathLike) -> np.ndarray:
    """y: (m,), (1, m) or (m, 1) integers -> (m,), else DatasetError."""
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise DatasetError(f"{source}: labels must be one per example, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise DatasetError(f"{source}: labels have dtype {y.dtype}; expected integers")
    return y


def classes_by_index(source: str | os.PathLike, *label_arrays: np.ndarray) -> tuple[str, ...]:
    """Names "0".."k-1" for integer labels that come without names; k = largest label + 1.

    label_arrays: the training labels (m,), then any others (a test split's)."""
    labels = [integer_labels(y, source) for y in label_arrays]
    if labels[0].size == 0:  # say so, rather than "a single class ['0']"
        raise DatasetError(f"{source}: no examples (the labels are empty)")
    largest = max((int(y.max()) for y in labels if y.size), default=0)
    return tuple(str(i) for i in range(largest + 1))


def labels_as_int(y: np.ndarray, source: str | os.PathLike, num_classes: int) -> np.ndarray:
    """y: (m,), (1, m) or (m, 1) integer labels in [0, num_classes) -> (m,) int64."""
    y = integer_labels(y, source)
    out_of_range = (y < 0) | (y >= num_classes)
    if out_of_range.any():
        raise DatasetError(
            f"{source}: label {y[out_of_range][0]} is out of range for {num_classes} classes "
            f"(0..{num_classes - 1})"
        )
    return y.astype(np.int64)


def to_columns(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    source: str | os.PathLike,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """x: (m, ...) images or vectors, y: (m,) labels -> X (n_x, m) row-stored view, Y (1, m)."""
    if x.ndim < 2:
        raise DatasetError(f"{source}: images must be (m, ...) with m examples, got {x.shape}")
    if len(x) != np.size(y):
        raise DatasetError(f"{source}: {len(x)} images but {np.size(y)} labels; counts must match")
    if len(x) == 0:
        raise DatasetError(f"{source}: no examples")
    labels = labels_as_int(y, source, num_classes)
    rows = np.ascontiguousarray(pixels_as_float(x, source, dtype).reshape(len(x), -1))
    return rows.T, labels.reshape(1, -1)
