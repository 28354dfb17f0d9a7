"""Datasets as X (n_x, m), Y (1, m): built-ins, folders of images, .npz, course .h5, MNIST IDX.

One example per column in the API, one per row in memory: every X is the transpose view of a
C-contiguous (m, n_x) array. Only NumPy and the standard library are imported here; Pillow,
h5py, scikit-learn and scikit-image are imported by the reader that needs them
(``pip install 'gradq[datasets]'``).
"""

from .builtin import BUILTIN_DATASETS
from .dataset import Dataset, DatasetError, MissingDependencyError
from .images import image_example
from .limits import DatasetLimits
from .loader import inspect_dataset, load_dataset
from .preprocessing import flatten, one_hot, scale_pixels, standardize, train_val_split

__all__ = [
    "BUILTIN_DATASETS",
    "Dataset",
    "DatasetError",
    "DatasetLimits",
    "MissingDependencyError",
    "flatten",
    "image_example",
    "inspect_dataset",
    "load_dataset",
    "one_hot",
    "scale_pixels",
    "standardize",
    "train_val_split",
]
