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
HASH_BLOCK_BYTES = 8 * 1024 * 1024  # rows hashed at a time
MAX_CLASSES = 1000
MAX_CLASS_NAME_CHARS = 128


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


def regular_file(path: os.PathLike) -> bool:
    """A file itself, not a link to one: a dataset never reads outside its own folder."""
    return not os.path.islink(path) and os.path.isfile(path)


def regular_folder(path: os.PathLike) -> bool:
    """A folder itself, not a link to one."""
    return not os.path.islink(path) and os.path.isdir(path)


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
        rows = self.X.T  # (m, n_x), C-contiguous
        digest = DatasetDigest(rows.dtype, rows.shape, self.image_shape)
        step = max(1, HASH_BLOCK_BYTES // max(1, rows.strides[0]))
        for start in range(0, rows.shape[0], step):
            digest.update(rows[start : start + step])
        return digest.finish(self.Y, self.classes)


class DatasetDigest:
    """Dataset.sha256 fed a block of rows at a time, so that no copy of X is ever made whole."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, int], image_shape: tuple[int, ...]):
        self._dtype = np.dtype(dtype).newbyteorder("<")
        shape, image_shape = tuple(map(int, shape)), tuple(map(int, image_shape))
        self._hash = hashlib.sha256(f"{self._dtype.str}{shape}{image_shape}".encode())

    def update(self, rows: np.ndarray) -> None:
        """rows: (k, n_x), the next k examples."""
        self._hash.update(np.ascontiguousarray(rows, dtype=self._dtype))

    def finish(self, Y: np.ndarray, classes: tuple[str, ...]) -> str:
        """Y: (1, m) or (m,) labels."""
        self._hash.update(np.ascontiguousarray(Y, dtype="<i8"))
        self._hash.update("\0".join(classes).encode())
        return self._hash.hexdigest()


def check_classes(
    classes: tuple[str, ...],
    source: str | os.PathLike,
    max_classes: int = MAX_CLASSES,
    max_chars: int = MAX_CLASS_NAME_CHARS,
) -> tuple[str, ...]:
    """At least two distinct, printable class names, at most ``max_classes`` of at most
    ``max_chars`` characters each; else DatasetError."""
    if len(classes) < 2:
        raise DatasetError(
            f"{source}: a single class {list(classes)}; a classifier needs at least two"
        )
    if len(classes) > max_classes:
        raise DatasetError(f"{source}: {len(classes)} classes, over the limit of {max_classes}")
    for name in classes:
        # Names travel into JSON, SQL and MLflow: no control characters, no empty names.
        if not name.strip() or not name.isprintable() or len(name) > max_chars:
            raise DatasetError(
                f"{source}: class name {name[:max_chars]!r} must be 1 to {max_chars} printable "
                "characters"
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


def write_floats(block: np.ndarray, out: np.ndarray, source: str | os.PathLike) -> None:
    """block: (k, n_x) uint8 or float -> out: (k, n_x) float, uint8 scaled by 1/255; a
    non-finite value (or one beyond out's range) is a DatasetError."""
    if block.dtype == np.uint8:
        np.divide(block, 255, out=out, dtype=out.dtype)
        return
    with np.errstate(over="ignore"):  # beyond float32's range: refused just below
        out[...] = block
    if not np.isfinite(out).all():
        raise DatasetError(
            f"{source}: images contain non-finite values (NaN or inf, or beyond {out.dtype}'s "
            "range)"
        )


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


def classes_by_index(
    source: str | os.PathLike, *label_arrays: np.ndarray, max_classes: int = MAX_CLASSES
) -> tuple[str, ...]:
    """Names "0".."k-1" for integer labels that come without names; k = largest label + 1.

    label_arrays: the training labels (m,), then any others (a test split's)."""
    labels = [integer_labels(y, source) for y in label_arrays]
    if labels[0].size == 0:  # say so, rather than "a single class ['0']"
        raise DatasetError(f"{source}: no examples (the labels are empty)")
    largest = max((int(y.max()) for y in labels if y.size), default=0)
    if largest >= max_classes:  # checked before making a name per class
        raise DatasetError(
            f"{source}: label {largest} means {largest + 1} classes, over the limit of "
            f"{max_classes}"
        )
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
    """x: (m, ...) float images or vectors in memory (the built-ins), y: (m,) labels ->
    X (n_x, m) row-stored view, Y (1, m)."""
    if x.ndim < 2:
        raise DatasetError(f"{source}: images must be (m, ...) with m examples, got {x.shape}")
    if len(x) != np.size(y):
        raise DatasetError(f"{source}: {len(x)} images but {np.size(y)} labels; counts must match")
    if len(x) == 0:
        raise DatasetError(f"{source}: no examples")
    labels = labels_as_int(y, source, num_classes)
    rows = np.empty((len(x), math.prod(x.shape[1:])), dtype=dtype)
    write_floats(x.reshape(len(x), -1), rows, source)
    return rows.T, labels.reshape(1, -1)
