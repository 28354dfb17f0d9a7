"""A dataset as its files describe it: shapes, dtypes, labels and class names read, the examples
not yet. Each reader builds one from headers and small reads; then ``load`` fills a single float
array block by block, and ``digest`` checks and hashes every example in bounded memory (what
an upload needs without decoding the whole dataset at once).
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .dataset import (
    Dataset,
    DatasetDigest,
    DatasetError,
    check_classes,
    check_two_classes_present,
    classes_by_index,
    labels_as_int,
    write_floats,
)
from .limits import MIB, DatasetLimits, check_budget, float_bytes

BLOCK_VALUES = MIB  # values read at a time: at most 8 MiB as stored
PIXEL_DTYPES = "uint8 pixels or float values (float16, float32, float64)"
DIGEST_DTYPE = np.dtype("float32")  # an upload's sha256 is that of its float32 Dataset


@dataclass(frozen=True)
class StoredRows:
    """Examples in a file: ``shape`` (m, *example) of ``dtype`` as stored.

    read(k) yields the examples in order, in arrays of at most k of them: (k, *example).
    held_bytes: what the reader keeps in memory besides one block (an array it reads whole).
    """

    source: str
    shape: tuple[int, ...]
    dtype: np.dtype
    read: Callable[[int], Iterator[np.ndarray]]
    held_bytes: int = 0

    def __post_init__(self) -> None:
        if len(self.shape) < 2 or 0 in self.shape[1:]:
            raise DatasetError(
                f"{self.source}: images must be (m, ...) with m examples of at least one value, "
                f"got {self.shape}"
            )
        if not (self.dtype == np.uint8 or (self.dtype.kind == "f" and self.dtype.itemsize <= 8)):
            raise DatasetError(
                f"{self.source}: images have dtype {self.dtype}; expected {PIXEL_DTYPES}"
            )

    @property
    def m(self) -> int:
        return int(self.shape[0])

    @property
    def n_x(self) -> int:
        return math.prod(int(d) for d in self.shape[1:])

    @property
    def rows_per_block(self) -> int:
        return max(1, BLOCK_VALUES // max(1, self.n_x))

    @property
    def block_bytes(self) -> int:
        """The largest block in memory: as stored, as float32 (digest) and its finite mask."""
        return min(self.m, self.rows_per_block) * self.n_x * (self.dtype.itemsize + 5)

    def blocks(self) -> Iterator[np.ndarray]:
        """The examples as (k, n_x) blocks of the stored dtype, m rows in all."""
        done = 0
        for block in self.read(self.rows_per_block):
            if done + len(block) > self.m or block.shape[1:] != self.shape[1:]:
                raise DatasetError(f"{self.source}: the examples do not match the header")
            yield block.reshape(len(block), self.n_x)
            done += len(block)
        if done != self.m:
            raise DatasetError(f"{self.source}: {done} examples found, the header says {self.m}")

    def as_floats(self, out: np.ndarray) -> None:
        """Fill out: (m, n_x) floats with the examples: uint8 / 255, floats as they are."""
        start = 0
        for block in self.blocks():
            write_floats(block, out[start : start + len(block)], self.source)
            start += len(block)


@dataclass(frozen=True)
class StoredSplit:
    """x: the examples; labels: (m,) int64 class indices, checked against the classes."""

    x: StoredRows
    labels: np.ndarray


@dataclass(frozen=True)
class StoredDataset:
    name: str
    classes: tuple[str, ...]
    image_shape: tuple[int, ...]
    train: StoredSplit
    test: StoredSplit | None = None

    @property
    def splits(self) -> list[StoredSplit]:
        return [self.train] + ([self.test] if self.test else [])

    @property
    def n_x(self) -> int:
        return self.train.x.n_x

    @property
    def m(self) -> int:
        return self.train.x.m

    @property
    def m_test(self) -> int:
        return self.test.x.m if self.test else 0

    def decoded_bytes(self, dtype: np.dtype) -> int:
        """What loading allocates: every example as floats of ``dtype``, the int64 labels,
        one block being read and what the readers hold whole."""
        examples = (self.m + self.m_test, self.n_x)
        reading = sum(split.x.held_bytes for split in self.splits)
        reading += max(split.x.block_bytes for split in self.splits)
        return float_bytes(examples, dtype) + 8 * (self.m + self.m_test) + reading

    def check_budget(self, dtype: np.dtype, limits: DatasetLimits) -> None:
        check_budget(self.train.x.source, self.decoded_bytes(dtype), limits, "the dataset")

    def load(self, dtype: np.dtype, limits: DatasetLimits) -> Dataset:
        """The whole dataset in memory: X (n_x, m) of ``dtype``, row-stored."""
        self.check_budget(dtype, limits)
        arrays = []
        for split in self.splits:
            rows = np.empty((split.x.m, split.x.n_x), dtype=dtype)
            split.x.as_floats(rows)
            arrays += [rows.T, split.labels.reshape(1, -1)]
        return Dataset(self.name, *arrays[:2], self.classes, self.image_shape, *arrays[2:])

    def digest(self, limits: DatasetLimits) -> str:
        """Read every example once, a block at a time, checking it as ``load`` would; the
        sha256 that ``load(float32).sha256()`` gives."""
        self.check_budget(DIGEST_DTYPE, limits)
        digest = DatasetDigest(DIGEST_DTYPE, (self.m, self.n_x), self.image_shape)
        for split in self.splits:
            for block in split.x.blocks():
                floats = np.empty(block.shape, dtype=DIGEST_DTYPE)
                write_floats(block, floats, split.x.source)
                if split is self.train:
                    digest.update(floats)
        return digest.finish(self.train.labels, self.classes)


def check_labels_header(
    x: StoredRows, labels_shape: tuple[int, ...], itemsize: int, limits: DatasetLimits
) -> None:
    """Before labels are read: one per example, and the examples (as float32, the least a
    load takes) and the labels within the budget; else DatasetError. A labels array can be
    a bomb of its own."""
    count = math.prod(int(d) for d in labels_shape)
    if count != x.m:
        raise DatasetError(f"{x.source}: {x.m} images but {count} labels; counts must match")
    needed = float_bytes((x.m, x.n_x), DIGEST_DTYPE) + count * itemsize
    check_budget(x.source, needed, limits, "the dataset")


def stored_dataset(
    name: str,
    train: tuple[StoredRows, np.ndarray],
    classes: tuple[str, ...] | None,
    limits: DatasetLimits,
    test: tuple[StoredRows, np.ndarray] | None = None,
    label_source: str | None = None,
) -> StoredDataset:
    """The StoredDataset of examples and raw labels (m,): classes "0".."k-1" when the source
    names none; every check that needs no example done (counts, ranges, two classes present,
    the test split's example shape).

    label_source: the file the labels came from, for messages (default: the examples')."""
    x, y = train
    label_source = label_source or x.source
    if classes is None:
        classes = classes_by_index(
            label_source, y, *([test[1]] if test else []), max_classes=limits.max_classes
        )
    check_classes(classes, label_source, limits.max_classes, limits.max_class_name_chars)
    splits = []
    for rows, labels in [train] + ([test] if test else []):
        if rows.m != np.size(labels):
            raise DatasetError(
                f"{rows.source}: {rows.m} images but {np.size(labels)} labels; counts must match"
            )
        if rows.m == 0:
            raise DatasetError(f"{rows.source}: no examples")
        if rows.shape[1:] != x.shape[1:]:
            raise DatasetError(
                f"{rows.source}: test examples have shape {rows.shape[1:]} but training "
                f"examples have {x.shape[1:]}"
            )
        source = label_source if rows is x else rows.source
        splits.append(StoredSplit(rows, labels_as_int(labels, source, len(classes))))
    check_two_classes_present(splits[0].labels, classes, label_source)
    return StoredDataset(name, tuple(classes), tuple(x.shape[1:]), *splits)
