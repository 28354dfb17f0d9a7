"""A folder with one subfolder of images per class, read with Pillow.

Class names are the sorted subfolder names; label i is ``classes[i]``. Every image is converted
to one mode ("RGB" or "L") and resized to one size so that they stack into a single array.
"""

from pathlib import Path

import numpy as np

from .dataset import Dataset, DatasetError, check_classes, require, to_columns

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MODES = ("RGB", "L")
GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")


def _visible(path: Path) -> bool:
    # Hidden entries are editor and OS clutter (.DS_Store, .ipynb_checkpoints), never classes.
    return not path.name.startswith(".")


def class_folders(root: Path) -> list[Path]:
    """The class subfolders, sorted by name; at least two."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if not folders:
        raise DatasetError(
            f"{root}: no class subfolders; expected one subfolder of images per class"
        )
    check_classes(tuple(f.name for f in folders), root)
    return folders


def image_files(folder: Path) -> list[Path]:
    """The images in one class folder, sorted; at least one."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DatasetError(f"{folder}: empty class folder, no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _open(path: Path):
    """The decoded first frame of an image, or DatasetError."""
    Image = require("PIL.Image", "reading folders of images")
    try:
        with Image.open(path) as image:
            image.load()
            # Palette transparency must go through RGBA, or Pillow warns on the RGB conversion.
            if image.mode == "P" and "transparency" in image.info:
                return image.convert("RGBA")
            return image.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{path}: corrupt or unreadable image ({error})") from error


def _normal_mode(mode: str) -> str:
    return "L" if mode in GRAYSCALE_MODES else "RGB"


def _pixels(path: Path, mode: str, size_hw: tuple[int, int]) -> np.ndarray:
    """One image as uint8 (h, w) for "L" or (h, w, 3) for "RGB"."""
    Image = require("PIL.Image", "reading folders of images")
    image = _open(path).convert(mode)
    height, width = size_hw
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def load_image_folder(
    root: Path,
    dtype: np.dtype,
    image_size: tuple[int, int] | None = None,
    mode: str | None = None,
) -> Dataset:
    """root/<class>/<image> -> X (h*w*c, m) with pixels / 255, Y (1, m).

    image_size: (height, width); default the first image's. mode: "RGB" (c = 3) or "L" (c = 1,
    image_shape (h, w)); default the first image's, palette/alpha/16-bit modes mapped to RGB or L.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
    if image_size is not None and (
        len(image_size) != 2 or any(int(side) < 1 for side in image_size)
    ):
        raise ValueError(f"image_size must be (height, width) of positive ints, got {image_size}")
    folders = class_folders(root)
    files_per_class = [image_files(folder) for folder in folders]
    first = _open(files_per_class[0][0])
    mode = mode or _normal_mode(first.mode)
    size_hw = (
        (int(image_size[0]), int(image_size[1])) if image_size else (first.height, first.width)
    )
    image_shape = size_hw + ((3,) if mode == "RGB" else ())
    m = sum(len(files) for files in files_per_class)
    pixels = np.empty((m, *image_shape), dtype=np.uint8)
    labels = np.empty(m, dtype=np.int64)
    i = 0
    for label, files in enumerate(files_per_class):
        for path in files:
            pixels[i] = _pixels(path, mode, size_hw)
            labels[i] = label
            i += 1
    classes = tuple(folder.name for folder in folders)
    X, Y = to_columns(pixels, labels, len(classes), root, dtype)
    return Dataset(root.name, X, Y, classes, image_shape)
