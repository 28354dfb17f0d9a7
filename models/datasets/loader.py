"""``load_dataset``: one entry point that picks the reader from the source."""

import os
from pathlib import Path

from .arrays import load_h5, load_npz
from .builtin import BUILTIN_DATASETS, load_builtin
from .dataset import Dataset, DatasetError, float_dtype
from .idx import find_images_in, is_idx_images, load_idx
from .images import load_image_folder

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

    Raises DatasetError (a ValueError) naming the file and the problem, and
    MissingDependencyError (an ImportError) when an optional reader is not installed.
    """
    resolved = float_dtype(dtype)
    if isinstance(source, str) and source in BUILTIN_DATASETS:
        _no_image_options(source, image_size, mode)
        return load_builtin(source, resolved)
    path = Path(source)
    if not path.exists():
        raise DatasetError(
            f"{source}: no such file or folder, and not a built-in dataset "
            f"(built-in: {', '.join(BUILTIN_DATASETS)})"
        )
    if path.is_dir():
        idx_images = find_images_in(path)
        if idx_images is None:
            return load_image_folder(path, resolved, image_size=image_size, mode=mode)
        path = idx_images
    _no_image_options(path, image_size, mode)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, resolved)
    if suffix in H5_SUFFIXES:
        return load_h5(path, resolved)
    if is_idx_images(path):
        return load_idx(path, resolved)
    raise DatasetError(f"{path}: unsupported source; expected {SUPPORTED}")


def _no_image_options(source, image_size, mode) -> None:
    # Silently ignoring a requested size would hand back data of a shape nobody asked for.
    if image_size is not None or mode is not None:
        raise ValueError(f"{source}: image_size and mode apply only to folders of images")
