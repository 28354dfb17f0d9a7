"""Readers of arrays saved whole: .npy, .npz, and the course's HDF5 pairs.

Never unpickles: arrays load with ``allow_pickle=False``, and an object array becomes a
DatasetError naming the file, since unpickling an untrusted file runs arbitrary code.
"""

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .dataset import (
    Dataset,
    DatasetError,
    check_classes,
    check_two_classes_present,
    classes_by_index,
    require,
    to_columns,
)

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
NPZ_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _starts_with(path: Path, magics: tuple[bytes, ...]) -> bool:
    with open(path, "rb") as file:
        head = file.read(max(len(m) for m in magics))
    return any(head.startswith(m) for m in magics)


def _unreadable(path: Path, what: str, error: Exception) -> DatasetError:
    # numpy refuses object arrays with a message about allow_pickle; say what it means instead.
    if "allow_pickle" in str(error) or "pickled" in str(error):
        return DatasetError(f"{path}: {what} contains pickled objects, which are never loaded")
    return DatasetError(f"{path}: could not read {what} ({type(error).__name__}: {error})")


def read_npy(path: Path) -> np.ndarray:
    """One array from a .npy file, any shape; never unpickles."""
    if not _starts_with(path, (NPY_MAGIC,)):
        raise DatasetError(f"{path}: not a .npy file (no NumPy header)")
    try:
        with open(path, "rb") as file:
            return np.load(file, allow_pickle=False)
    except NPZ_READ_ERRORS as error:
        raise _unreadable(path, "the array", error) from error


def _npz_member(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except NPZ_READ_ERRORS as error:
        raise _unreadable(path, f"array '{key}'", error) from error


def _class_names(names: np.ndarray, source: Path | str) -> tuple[str, ...]:
    """(k,) str or bytes array -> k names."""
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DatasetError(
            f"{source}: class names must be a 1-D string array, got {names.dtype} {names.shape}"
        )
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz that holds at least x and y."""
    if not _starts_with(path, ZIP_MAGICS):
        raise DatasetError(f"{path}: not an .npz archive (not a zip file)")
    # Our own handle: np.load leaks the one it opens when the zip turns out to be broken.
    with open(path, "rb") as file:
        try:
            archive = np.load(file, allow_pickle=False)
        except NPZ_READ_ERRORS as error:
            raise _unreadable(path, "the archive", error) from error
        with archive:
            keys = set(archive.files)
            missing = {"x", "y"} - keys
            if missing:
                raise DatasetError(
                    f"{path}: missing array(s) {sorted(missing)}; found {sorted(keys)}, "
                    "expected x (m, ...) and y (m,)"
                )
            if ("x_test" in keys) != ("y_test" in keys):
                raise DatasetError(f"{path}: x_test and y_test must be saved together")
            return {key: _npz_member(archive, key, path) for key in sorted(keys)}


def load_npz(path: Path, dtype: np.dtype) -> Dataset:
    """An .npz with x (m, ...), y (m,) and optionally classes (k,), x_test, y_test.

    Returns X (n_x, m) with n_x = prod(x.shape[1:]); uint8 x is divided by 255, float x kept.
    """
    arrays = _read_npz(path)
    if "classes" in arrays:
        classes = _class_names(arrays["classes"], path)
    else:
        test_labels = [arrays["y_test"]] if "y_test" in arrays else []
        classes = classes_by_index(path, arrays["y"], *test_labels)
    check_classes(classes, path)
    X, Y = to_columns(arrays["x"], arrays["y"], len(classes), path, dtype)
    check_two_classes_present(Y, classes, path)
    X_test = Y_test = None
    if "x_test" in arrays:
        _check_same_example_shape(arrays["x"], arrays["x_test"], path)
        X_test, Y_test = to_columns(
            arrays["x_test"], arrays["y_test"], len(classes), f"{path} (x_test)", dtype
        )
    image_shape = arrays["x"].shape[1:]
    return Dataset(path.stem, X, Y, classes, image_shape, X_test, Y_test)


def _check_same_example_shape(x: np.ndarray, x_test: np.ndarray, source: Path | str) -> None:
    if x.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{source}: test examples have shape {x_test.shape[1:]} but training examples "
            f"have {x.shape[1:]}"
        )


def _set_keys(keys: set[str], path: Path) -> tuple[str, str]:
    """The one ``{split}_set_x``, ``{split}_set_y`` pair of the course layout."""
    prefixes = [k.removesuffix("_set_x") for k in sorted(keys) if k.endswith("_set_x")]
    pairs = [(f"{p}_set_x", f"{p}_set_y") for p in prefixes if f"{p}_set_y" in keys]
    if len(pairs) != 1:
        raise DatasetError(
            f"{path}: expected one pair of datasets like 'train_set_x', 'train_set_y' "
            f"(the course layout); found {sorted(keys)}"
        )
    return pairs[0]


def _read_h5_split(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """``*_set_x`` (m, h, w, c), ``*_set_y`` (m,), and ``list_classes`` (k,) if present."""
    h5py = require("h5py", "reading .h5 files")
    if not h5py.is_hdf5(os.fspath(path)):
        raise DatasetError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as file:
            x_key, y_key = _set_keys(set(file.keys()), path)
            x, y = file[x_key][()], file[y_key][()]
            names = file["list_classes"][()] if "list_classes" in file else None
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise DatasetError(f"{path}: could not read HDF5 data ({error})") from error
    classes = None if names is None else _class_names(np.asarray(names), path)
    return np.asarray(x), np.asarray(y), classes


def load_h5(path: Path, dtype: np.dtype) -> Dataset:
    """The deeplearning.ai layout: ``train_*.h5`` and, beside it, ``test_*.h5``.

    Returns X (h*w*c, m) from train_set_x (m, h, w, c) uint8 / 255, Y (1, m) from train_set_y;
    X_test and Y_test from the test file when it exists.
    """
    x, y, classes = _read_h5_split(path)
    test_path = path.with_name(path.name.replace("train", "test"))
    has_test = test_path != path and test_path.is_file()
    if has_test:
        x_test, y_test, _ = _read_h5_split(test_path)
    if classes is None:
        classes = classes_by_index(path, y, *([y_test] if has_test else []))
    check_classes(classes, path)
    X, Y = to_columns(x, y, len(classes), path, dtype)
    check_two_classes_present(Y, classes, path)
    X_test = Y_test = None
    if has_test:
        _check_same_example_shape(x, x_test, test_path)
        X_test, Y_test = to_columns(x_test, y_test, len(classes), test_path, dtype)
    return Dataset(path.stem, X, Y, classes, x.shape[1:], X_test, Y_test)
