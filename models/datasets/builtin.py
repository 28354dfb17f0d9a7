"""The two datasets that ship inside optional dependencies, so they need no download."""

import importlib.resources
from pathlib import Path

import numpy as np

from .arrays import read_npy
from .dataset import Dataset, check_classes, require, to_columns

BUILTIN_DATASETS: tuple[str, ...] = ("digits", "faces")

DIGIT_MAX_PIXEL = 16.0
FACES_PER_CLASS = 100  # lfw_subset.npy holds 100 faces, then 100 non-faces


def load_digits(dtype: np.dtype) -> Dataset:
    """scikit-learn's 8x8 digits: X (64, 1797) in [0, 1], Y (1, 1797) in 0..9."""
    sklearn_datasets = require("sklearn.datasets", "the 'digits' dataset")
    bunch = sklearn_datasets.load_digits()
    classes = tuple(str(d) for d in range(10))
    pixels = bunch.images / DIGIT_MAX_PIXEL  # (1797, 8, 8)
    X, Y = to_columns(pixels, bunch.target, len(classes), "digits", dtype)
    return Dataset("digits", X, Y, classes, image_shape=pixels.shape[1:])


def faces_path() -> Path:
    """Where scikit-image keeps lfw_subset.npy: (200, 25, 25) float64 in [0, 1]."""
    require("skimage", "the 'faces' dataset")
    return Path(str(importlib.resources.files("skimage") / "data" / "lfw_subset.npy"))


def load_faces(dtype: np.dtype, path: Path | None = None) -> Dataset:
    """Faces vs non-faces at 25x25: X (625, 200) in [0, 1], Y (1, 200), 1 = face."""
    path = path or faces_path()
    images = read_npy(path)
    labels = np.zeros(len(images), dtype=np.int64)
    labels[:FACES_PER_CLASS] = 1
    classes = check_classes(("non-face", "face"), path)
    X, Y = to_columns(images, labels, len(classes), path, dtype)
    return Dataset("faces", X, Y, classes, image_shape=images.shape[1:])


def load_builtin(name: str, dtype: np.dtype) -> Dataset:
    """One of BUILTIN_DATASETS by name."""
    return {"digits": load_digits, "faces": load_faces}[name](dtype)
