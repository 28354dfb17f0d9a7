"""MNIST-style IDX files, plain or gzipped.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values, big-endian, in C order. A gzipped file is
decompressed as it is read, a block at a time, so its header is checked against the limits
before the values are decompressed (a small file can inflate a thousandfold).
"""

import contextlib
import gzip
import itertools
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .dataset import DatasetError, regular_file
from .limits import DatasetLimits, nbytes
from .stored import StoredDataset, StoredRows, check_labels_header, stored_dataset

IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_DIMENSIONS = 4  # images are (m, rows, cols), labels (m,)
GZIP_MAGIC = b"\x1f\x8b"
GZIP_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError
IMAGES_MARKERS = ("images-idx3", "images.idx3")


@dataclass(frozen=True)
class IdxHeader:
    path: Path
    dtype: np.dtype  # as stored (big-endian)
    shape: tuple[int, ...]
    size: int  # bytes of the header

    @property
    def data_bytes(self) -> int:
        return nbytes(self.shape, self.dtype.itemsize)


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes: as they are, or decompressed while they are read."""
    with open(path, "rb") as raw:
        if raw.read(2) != GZIP_MAGIC:
            raw.seek(0)
            yield raw
            return
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw) as stream:
            yield stream


def _corrupt_gzip(path: Path, error: Exception) -> DatasetError:
    return DatasetError(f"{path}: corrupt or truncated gzip stream ({error})")


def read_header(path: Path) -> IdxHeader:
    """The header; for a plain file, also that the file holds exactly its values."""
    try:
        with _opened(path) as stream:
            magic = stream.read(4)
            if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_TYPES:
                raise DatasetError(
                    f"{path}: not an IDX file (bad magic number {magic.hex() or 'none'})"
                )
            ndim = magic[3]
            if not 1 <= ndim <= MAX_DIMENSIONS:
                raise DatasetError(f"{path}: {ndim} dimensions; IDX data here has 1 to 4")
            dims = stream.read(4 * ndim)
            gzipped = isinstance(stream, gzip.GzipFile)
    except GZIP_ERRORS as error:
        raise _corrupt_gzip(path, error) from error
    size = 4 + 4 * ndim
    if len(dims) < 4 * ndim:
        raise DatasetError(f"{path}: truncated IDX header ({4 + len(dims)} of {size} bytes)")
    header = IdxHeader(path, IDX_TYPES[magic[2]], struct.unpack(f">{ndim}I", dims), size)
    if not gzipped:
        _check_length(header, path.stat().st_size - size)
    return header


def _check_length(header: IdxHeader, found: int) -> None:
    expected = header.data_bytes
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise DatasetError(
            f"{header.path}: IDX data {problem}: header {header.shape} needs {expected} "
            f"bytes, found {found}"
        )


def read_values(header: IdxHeader, per_block: int) -> Iterator[np.ndarray]:
    """The values in blocks of at most ``per_block`` along the first axis, native byte order;
    DatasetError if the file holds fewer or more than its header says."""
    example = header.shape[1:]
    row_bytes = nbytes(example, header.dtype.itemsize)
    native = header.dtype.newbyteorder("=")
    read = 0
    try:
        with _opened(header.path) as stream:
            stream.read(header.size)
            for start in range(0, header.shape[0], per_block):
                count = min(per_block, header.shape[0] - start)
                data = stream.read(count * row_bytes)
                read += len(data)
                if len(data) < count * row_bytes:
                    _check_length(header, read)
                values = np.frombuffer(data, dtype=header.dtype).reshape(count, *example)
                yield values.astype(native, copy=False)
            if stream.read(1):
                _check_length(header, read + 1)
    except GZIP_ERRORS as error:
        raise _corrupt_gzip(header.path, error) from error


def read_all(header: IdxHeader) -> np.ndarray:
    """The whole array (labels: check its size first)."""
    blocks = list(read_values(header, max(1, header.shape[0])))
    return blocks[0] if blocks else np.empty(header.shape, header.dtype.newbyteorder("="))


def _beside(path: Path, name: str) -> Path | None:
    """The file ``name`` next to ``path``, plain or with .gz, preferring path's own compression."""
    plain = name.removesuffix(".gz")
    candidates = [plain + ".gz", plain] if path.name.endswith(".gz") else [plain, plain + ".gz"]
    return next((path.with_name(c) for c in candidates if regular_file(path.with_name(c))), None)


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


def find_images_in(folder: Path, limits: DatasetLimits) -> Path | None:
    """The IDX images file to load from a folder: the training one, else the only one."""
    entries = list(itertools.islice(folder.iterdir(), limits.max_files + 1))
    if len(entries) > limits.max_files:
        raise DatasetError(f"{folder}: more than {limits.max_files} entries")
    images = sorted(p for p in entries if is_idx_images(p) and regular_file(p))
    training = [p for p in images if p.name.startswith("train")]
    if training:
        return training[0]
    return images[0] if len(images) == 1 else None


def _rows(header: IdxHeader) -> StoredRows:
    if len(header.shape) < 2:
        raise DatasetError(f"{header.path}: IDX images must have 2+ dimensions, got {header.shape}")
    return StoredRows(
        str(header.path),
        header.shape,
        header.dtype.newbyteorder("="),
        lambda k: read_values(header, k),
    )


def _labels(images: StoredRows, limits: DatasetLimits) -> tuple[np.ndarray, Path]:
    label_file = labels_path(Path(images.source))
    header = read_header(label_file)
    if len(header.shape) != 1:
        raise DatasetError(f"{label_file}: IDX labels must be 1-D, got {header.shape}")
    check_labels_header(images, header.shape, header.dtype.itemsize, limits)
    return read_all(header), label_file


def inspect_idx(images_path: Path, limits: DatasetLimits) -> StoredDataset:
    """MNIST-style images file -> examples (m, rows, cols) and labels (m,) from the labels
    file beside it; a ``train-...`` file takes the ``t10k-...`` pair beside it, if any, as
    the test split."""
    images = _rows(read_header(images_path))
    labels, label_file = _labels(images, limits)
    test = None
    if images_path.name.startswith("train"):
        test_images_path = _beside(images_path, "t10k" + images_path.name.removeprefix("train"))
        if test_images_path is not None:
            test_images = _rows(read_header(test_images_path))
            test = (test_images, _labels(test_images, limits)[0])
    name = images_path.name.removesuffix(".gz")
    return stored_dataset(name, (images, labels), None, limits, test, str(label_file))
