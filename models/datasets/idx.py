"""MNIST-style IDX files, plain or gzipped.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values, big-endian, in C order.
"""

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .dataset import (
    Dataset,
    DatasetError,
    check_classes,
    check_two_classes_present,
    classes_by_index,
    to_columns,
)

IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
IMAGES_MARKERS = ("images-idx3", "images.idx3")


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as file:
        raw = file.read()
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: corrupt or truncated gzip stream ({error})") from error


def read_idx(path: Path) -> np.ndarray:
    """The array in one IDX file, shape from its header, native byte order."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_TYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'none'})")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} of {header_size} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - header_size
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise DatasetError(
            f"{path}: IDX data {problem}: header {shape} needs {expected} bytes, found {found}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _beside(path: Path, name: str) -> Path | None:
    """The file ``name`` next to ``path``, plain or with .gz, preferring path's own compression."""
    plain = name.removesuffix(".gz")
    candidates = [plain + ".gz", plain] if path.name.endswith(".gz") else [plain, plain + ".gz"]
    return next((path.with_name(c) for c in candidates if path.with_name(c).is_file()), None)


def labels_path(images_path: Path) -> Path:
    """``...-images-idx3-ubyte[.gz]`` -> the ``...-labels-idx1-ubyte[.gz]`` beside it."""
    marker = next((m for m in IMAGES_MARKERS if m in images_path.name), None)
    if marker is None:
        raise DatasetError(
            f"{images_path}: an IDX images file name must contain 'images-idx3' to find its labels"
        )
    wanted = images_path.name.replace(marker, marker.replace("images", "labels").replace("3", "1"))
    found = _beside(images_path, wanted)
    if found is None:
        raise DatasetError(f"{images_path}: labels file {wanted} not found beside it")
    return found


def is_idx_images(path: Path) -> bool:
    """Whether a file name looks like an IDX images file."""
    return any(marker in path.name for marker in IMAGES_MARKERS)


def find_images_in(folder: Path) -> Path | None:
    """The IDX images file to load from a folder: the training one, else the only one."""
    images = sorted(p for p in folder.iterdir() if p.is_file() and is_idx_images(p))
    training = [p for p in images if p.name.startswith("train")]
    if training:
        return training[0]
    return images[0] if len(images) == 1 else None


def _read_pair(images_path: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    """images (m, rows, cols), labels (m,), and the labels file."""
    images = read_idx(images_path)
    if images.ndim < 2:
        raise DatasetError(f"{images_path}: IDX images must have 2+ dimensions, got {images.shape}")
    label_file = labels_path(images_path)
    labels = read_idx(label_file)
    if labels.ndim != 1:
        raise DatasetError(f"{label_file}: IDX labels must be 1-D, got {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path}: {len(images)} images but {len(labels)} labels in {label_file.name}"
        )
    return images, labels, label_file


def load_idx(images_path: Path, dtype: np.dtype) -> Dataset:
    """MNIST-style images file -> X (rows*cols, m) with uint8 / 255, Y (1, m).

    A ``train-...`` file takes the ``t10k-...`` pair beside it, if any, as X_test, Y_test.
    """
    images, labels, label_file = _read_pair(images_path)
    test = None
    if images_path.name.startswith("train"):
        test_images_path = _beside(images_path, "t10k" + images_path.name.removeprefix("train"))
        if test_images_path is not None:
            test = _read_pair(test_images_path)
    classes = classes_by_index(label_file, labels, *([test[1]] if test else []))
    check_classes(classes, label_file)
    X, Y = to_columns(images, labels, len(classes), images_path, dtype)
    check_two_classes_present(Y, classes, label_file)
    X_test = Y_test = None
    if test is not None:
        if test[0].shape[1:] != images.shape[1:]:
            raise DatasetError(
                f"{test_images_path}: test images are {test[0].shape[1:]}, "
                f"training images {images.shape[1:]}"
            )
        X_test, Y_test = to_columns(test[0], test[1], len(classes), test_images_path, dtype)
    name = images_path.name.removesuffix(".gz")
    return Dataset(name, X, Y, classes, images.shape[1:], X_test, Y_test)
