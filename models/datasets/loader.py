"""``load_dataset``: one entry point that picks the reader from the source."""

import os
from pathlib import Path

from .builtin import BUILTIN_DATASETS, load_builtin
from .dataset import Dataset, DatasetError, float_dtype
from .h5 import inspect_h5
from .idx import find_images_in, inspect_idx, is_idx_images
from .images import inspect_image_folder
from .limits import DatasetLimits
from .npz import inspect_npz
from .stored import StoredDataset

H5_SUFFIXES = (".h5", ".hdf5")
SUPPORTED = (
    "a built-in name, a folder of class subfolders of images, an .npz, "
    "a course .h5 file, or an MNIST IDX images file"
)


def load_dataset(
    source: str | os.PathLike,
    *,
    image_size: tuple[int, int] | None = None,
    mode: str | None = None,
    dtype: str = "float32",
    limits: DatasetLimits | None = None,
) -> Dataset:
    """Load a dataset as X (n_x, m) (row-stored), Y (1, m) class indices.

    Pixels stored as uint8 are scaled to [0, 1]; float values (an .npz, .h5 or IDX of floats)
    are kept as they are, after a check that they are finite.

    source: a name in BUILTIN_DATASETS (a str; pass a Path to mean a folder of that name), or a
        path to a folder of class subfolders of images, an .npz with x (m, ...) and y (m,), a
        course ``train_*.h5`` (its ``test_*.h5`` becomes X_test/Y_test), an MNIST
        ``*-images-idx3-ubyte[.gz]`` file, or a folder holding such IDX files.
    image_size: (height, width) to resize images to; folders of images only.
    mode: "RGB" or "L"; folders of images only.
    dtype: floating dtype of X.
    limits: what reading may cost (DatasetLimits' defaults when None); a source over them is
        refused from its headers, before its data is read.

    Raises DatasetError (a ValueError) naming the file and the problem, and
    MissingDependencyError (an ImportError) when an optional reader is not installed.
    """
    resolved = float_dtype(dtype)
    if isinstance(source, str) and source in BUILTIN_DATASETS:
        _no_image_options(source, image_size, mode)
        return load_builtin(source, resolved)
    limits = limits or DatasetLimits()
    stored = inspect_dataset(source, limits=limits, image_size=image_size, mode=mode)
    return stored.load(resolved, limits)


def inspect_dataset(
    source: str | os.PathLike,
    *,
    limits: DatasetLimits,
    image_size: tuple[int, int] | None = None,
    mode: str | None = None,
) -> StoredDataset:
    """The dataset at the path ``source`` as its headers describe it (see StoredDataset):
    every check that needs no example is done."""
    path = Path(source)
    if not path.exists():
        raise DatasetError(
            f"{source}: no such file or folder, and not a built-in dataset "
            f"(built-in: {', '.join(BUILTIN_DATASETS)})"
        )
    if path.is_dir():
        idx_images = find_images_in(path, limits)
        if idx_images is None:
            return inspect_image_folder(path, limits, image_size=image_size, mode=mode)
        path = idx_images
    _no_image_options(path, image_size, mode)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return inspect_npz(path, limits)
    if suffix in H5_SUFFIXES:
        return inspect_h5(path, limits)
    if is_idx_images(path):
        return inspect_idx(path, limits)
    raise DatasetError(f"{path}: unsupported source; expected {SUPPORTED}")


def _no_image_options(source, image_size, mode) -> None:
    # Silently ignoring a requested size would hand back data of a shape nobody asked for.
    if image_size is not None or mode is not None:
        raise ValueError(f"{source}: image_size and mode apply only to folders of images")
