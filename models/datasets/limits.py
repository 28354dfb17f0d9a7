"""What reading a dataset may cost, checked from headers before any data is read.

A file's size says little about what it decodes to: a compressed array, an image or an HDF5
dataset of a few kilobytes can declare gigabytes. Every reader states the shapes and dtypes it
will produce first (``StoredDataset``), and ``check_budget`` refuses the source before a single
pixel is decoded when they are over these limits.
"""

import math
from dataclasses import dataclass

import numpy as np

from models.units import human_bytes

from .dataset import MAX_CLASS_NAME_CHARS, MAX_CLASSES, DatasetError

MIB = 1024 * 1024


@dataclass(frozen=True)
class DatasetLimits:
    # Bytes that loading may allocate: the examples as floats of the training dtype, plus the
    # labels (the loader keeps nothing else of the size of the data).
    max_bytes: int = 2048 * MIB
    # Images in a folder, or entries in the folder an upload unpacks to.
    max_files: int = 50_000
    # Pixels of one image, decoded (Pillow's own bomb guard is set from it).
    max_image_pixels: int = 25_000_000
    # Class names: how many, and how long each may be.
    max_classes: int = MAX_CLASSES
    max_class_name_chars: int = MAX_CLASS_NAME_CHARS
    # Members of an .npz archive, looked at before any is parsed.
    max_npz_members: int = 16
    # Objects at the root of an .h5 file, and chunks of one HDF5 dataset: each chunk costs a
    # lookup and a call of the filter pipeline, however small it is.
    max_h5_objects: int = 16
    max_h5_chunks: int = 16_384


def nbytes(shape: tuple[int, ...], itemsize: int) -> int:
    """Bytes of an array of ``shape`` (Python ints: a header's 2**40 elements do not wrap)."""
    return math.prod(int(d) for d in shape) * int(itemsize)


def check_budget(source: object, needed: int, limits: DatasetLimits, what: str) -> None:
    """DatasetError naming ``source`` when ``needed`` bytes are over the limit."""
    if needed > limits.max_bytes:
        raise DatasetError(
            f"{source}: {what} would take {human_bytes(needed)} once decoded, over the limit of "
            f"{human_bytes(limits.max_bytes)}"
        )


def float_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes of ``shape`` examples as floats of ``dtype``."""
    return nbytes(shape, np.dtype(dtype).itemsize)
