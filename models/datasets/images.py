"""A folder with one subfolder of images per class, read with Pillow.

Class names are the sorted subfolder names; label i is ``classes[i]``. Every image is converted
to one mode ("RGB" or "L") and resized to one size so that they stack into a single array.

An image's header tells its size without decoding it: every header is read first, and a folder
whose images are too many, one of them too large, or all of them together too much to decode is
refused before a pixel is decoded. Links are refused: a dataset never reads outside its folder.
"""

import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .dataset import DatasetError, check_classes, regular_file, regular_folder, require
from .limits import DatasetLimits, check_budget
from .stored import StoredDataset, StoredRows, stored_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # the decoders Pillow may use, whatever the name
MODES = ("RGB", "L")
GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")


def _pil():
    Image = require("PIL.Image", "reading folders of images")
    return Image


def _visible(path: Path) -> bool:
    # Hidden entries are editor and OS clutter (.DS_Store, .ipynb_checkpoints), never classes.
    return not path.name.startswith(".")


def _entries(folder: Path, limits: DatasetLimits) -> list[Path]:
    """The visible entries of ``folder``, at most max_files of them; no links."""
    entries = list(itertools.islice(folder.iterdir(), limits.max_files + 1))
    if len(entries) > limits.max_files:
        raise DatasetError(f"{folder}: more than {limits.max_files} entries")
    visible = [p for p in entries if _visible(p)]
    for path in visible:
        if path.is_symlink():
            raise DatasetError(f"{path}: a symbolic link; a dataset holds its own files only")
    return visible


def class_folders(root: Path, limits: DatasetLimits) -> list[Path]:
    """The class subfolders, sorted by name; at least two."""
    folders = sorted(p for p in _entries(root, limits) if regular_folder(p))
    if not folders:
        raise DatasetError(
            f"{root}: no class subfolders; expected one subfolder of images per class"
        )
    check_classes(
        tuple(f.name for f in folders), root, limits.max_classes, limits.max_class_name_chars
    )
    return folders


def image_files(folder: Path, limits: DatasetLimits) -> list[Path]:
    """The images in one class folder, sorted; at least one."""
    files = sorted(
        p
        for p in _entries(folder, limits)
        if regular_file(p) and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DatasetError(f"{folder}: empty class folder, no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _unreadable(path: Path | str, error: Exception) -> DatasetError:
    return DatasetError(f"{path}: corrupt or unreadable image ({error})")


def _too_large(path: Path | str, size: str, limits: DatasetLimits) -> DatasetError:
    return DatasetError(
        f"{path}: {size} pixels are over the limit of {limits.max_image_pixels:,} per image"
    )


def image_example(
    data: bytes, name: str, image_shape: tuple[int, ...], limits: DatasetLimits
) -> np.ndarray:
    """One image file's bytes as an example of a dataset of ``image_shape`` images ((h, w) gray,
    (h, w, 3) RGB), made as this reader makes each image of a folder: converted to the mode,
    resized, and scaled by 1/255 as stored uint8 pixels are: (n_x,) float32. DatasetError naming
    ``name`` when it is not an image of a known format or has too many pixels."""
    Image = _pil()
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels  # Pillow's own guard, at decoding too
    _header(io.BytesIO(data), limits, name)
    mode = "RGB" if len(image_shape) == 3 else "L"
    pixels = _decode(io.BytesIO(data), mode, (image_shape[0], image_shape[1]), name)
    return pixels.reshape(-1).astype(np.float32) / np.float32(255)


def _header(
    path: Path | BinaryIO, limits: DatasetLimits, name: str | None = None
) -> tuple[int, int, str, int]:
    """(width, height, mode, bands) from the image's header; no pixel is decoded. ``name``:
    how errors name the image (default: its path)."""
    Image = _pil()
    path_or_name = name or path
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            width, height, mode = image.width, image.height, image.mode
            bands = len(image.getbands())
    except Image.DecompressionBombError as error:  # over twice the limit: Pillow's refusal
        raise _too_large(path_or_name, "its", limits) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise _unreadable(path_or_name, error) from error
    if width * height > limits.max_image_pixels:
        raise _too_large(path_or_name, f"{width}x{height}", limits)
    return width, height, mode, bands


def _decode(
    path: Path | BinaryIO, mode: str, size_hw: tuple[int, int], name: str | None = None
) -> np.ndarray:
    """One image as uint8 (h, w) for "L" or (h, w, 3) for "RGB"."""
    Image = _pil()
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            image.load()
            # Palette transparency must go through RGBA, or Pillow warns on the RGB conversion.
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")
            image = image.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise _unreadable(name or path, error) from error
    height, width = size_hw
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _normal_mode(mode: str) -> str:
    return "L" if mode in GRAYSCALE_MODES else "RGB"


def inspect_image_folder(
    root: Path,
    limits: DatasetLimits,
    image_size: tuple[int, int] | None = None,
    mode: str | None = None,
) -> StoredDataset:
    """root/<class>/<image> -> examples (m, h, w[, 3]) uint8, labels the class folders' order.

    image_size: (height, width); default the first image's. mode: "RGB" (c = 3) or "L" (c = 1,
    image_shape (h, w)); default the first image's, palette/alpha/16-bit modes mapped to RGB or L.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
    if image_size is not None and (
        len(image_size) != 2 or any(int(side) < 1 for side in image_size)
    ):
        raise ValueError(f"image_size must be (height, width) of positive ints, got {image_size}")
    folders = class_folders(root, limits)
    files, labels = [], []
    for label, folder in enumerate(folders):
        found = image_files(folder, limits)
        files += found
        labels += [label] * len(found)
        if len(files) > limits.max_files:
            raise DatasetError(f"{root}: more than {limits.max_files} images")
    Image = _pil()
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels  # Pillow's own guard, at decoding too
    headers = [_header(path, limits) for path in files]
    # Each image is decoded at its own size before it is resized: that work is bounded too.
    decoded = sum(width * height * bands for width, height, _, bands in headers)
    check_budget(root, decoded, limits, "decoding its images")
    first_width, first_height, first_mode, _ = headers[0]
    mode = mode or _normal_mode(first_mode)
    size_hw = (first_height, first_width)
    if image_size:
        size_hw = (int(image_size[0]), int(image_size[1]))
    shape = (len(files), *size_hw, *((3,) if mode == "RGB" else ()))
    rows = StoredRows(
        str(root), shape, np.dtype(np.uint8), lambda k: _blocks(files, mode, size_hw, k)
    )
    classes = tuple(folder.name for folder in folders)
    return stored_dataset(root.name, (rows, np.array(labels, dtype=np.int64)), classes, limits)


def _blocks(
    files: list[Path], mode: str, size_hw: tuple[int, int], per_block: int
) -> Iterator[np.ndarray]:
    for start in range(0, len(files), per_block):
        yield np.stack([_decode(path, mode, size_hw) for path in files[start : start + per_block]])
