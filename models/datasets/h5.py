"""The course's HDF5 pairs: ``train_*.h5`` with ``train_set_x`` (m, h, w, c), ``train_set_y``
(m,) and ``list_classes`` (k,), and ``test_*.h5`` beside it.

HDF5 can keep a dataset's bytes in another file (external storage, virtual datasets) or point
elsewhere with soft and external links, which h5py follows: an upload would read the host's
files. So before any data is read, every object at the file's root must be a dataset stored in
the file, behind a hard link, of a plain numeric or string type, with few enough chunks (each
chunk costs a lookup and a filter call, however small) and only the filters h5py writes.
"""

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .dataset import DatasetError, regular_file, require
from .limits import DatasetLimits
from .stored import StoredDataset, StoredRows, check_labels_header, stored_dataset

H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)


def _h5py():
    return require("h5py", "reading .h5 files")


def inspect_h5(path: Path, limits: DatasetLimits) -> StoredDataset:
    """What the course file (and its test partner) holds; labels and class names read."""
    x, y, classes = _split(path, limits)
    test_path = path.with_name(path.name.replace("train", "test"))
    test = None
    if test_path != path and regular_file(test_path):
        test_x, test_y, _ = _split(test_path, limits)
        test = (test_x, test_y)
    return stored_dataset(path.stem, (x, y), classes, limits, test)


def _split(path: Path, limits: DatasetLimits):
    """(StoredRows of ``*_set_x``, ``*_set_y`` read, class names or None) of one file."""
    h5py = _h5py()
    if not h5py.is_hdf5(os.fspath(path)):
        raise DatasetError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as file:
            datasets = _checked_root(file, path, limits)
            x_key, y_key = _set_keys(set(datasets), path)
            x, y = datasets[x_key], datasets[y_key]
            if y.dtype.kind not in "iu":
                raise DatasetError(f"{path}: labels have dtype {y.dtype}; expected integers")
            shape, dtype = tuple(int(d) for d in x.shape), x.dtype
            rows = StoredRows(
                str(path), shape, dtype, lambda k: _blocks(path, x_key, shape, dtype, k, limits)
            )
            check_labels_header(rows, y.shape, y.dtype.itemsize, limits)
            labels = y[()]
            names = None
            if "list_classes" in datasets:
                names = _class_names(datasets["list_classes"], path, limits)
    except DatasetError:
        raise
    except H5_ERRORS as error:
        raise DatasetError(f"{path}: could not read HDF5 data ({error})") from error
    return rows, labels, names


def _checked_root(file, path: Path, limits: DatasetLimits) -> dict:
    """The datasets at the root, by name, each checked; anything else is refused."""
    h5py = _h5py()
    if len(file) > limits.max_h5_objects:
        raise DatasetError(
            f"{path}: {len(file)} objects at the root, over the limit of {limits.max_h5_objects}"
        )
    datasets = {}
    for name in file:
        link = file.get(name, getlink=True)  # the link itself: nothing is followed yet
        if not isinstance(link, h5py.HardLink):
            raise DatasetError(
                f"{path}: {name!r} is a {type(link).__name__}; only data stored in the file "
                "itself is read"
            )
        item = file[name]
        if not isinstance(item, h5py.Dataset):
            raise DatasetError(f"{path}: {name!r} is a group; expected datasets at the root only")
        _check_storage(item, name, path, limits)
        datasets[name] = item
    return datasets


def _check_storage(dataset, name: str, path: Path, limits: DatasetLimits) -> None:
    h5py = _h5py()
    plist = dataset.id.get_create_plist()
    if plist.get_external_count() > 0:
        raise DatasetError(f"{path}: {name!r} keeps its data in an outside file (refused)")
    layout = plist.get_layout()
    if layout not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
        raise DatasetError(f"{path}: {name!r} is a virtual dataset, mapped from other files")
    if layout == h5py.h5d.CHUNKED:
        per_axis = zip(dataset.shape, dataset.chunks, strict=True)
        chunks = math.prod(math.ceil(size / chunk) for size, chunk in per_axis)
        if chunks > limits.max_h5_chunks:
            raise DatasetError(
                f"{path}: {name!r} is split in {chunks} chunks, over the limit of "
                f"{limits.max_h5_chunks}"
            )
    allowed = {h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32,
               h5py.h5z.FILTER_LZF}  # fmt: skip
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if any(f not in allowed for f in filters):
        raise DatasetError(
            f"{path}: {name!r} uses HDF5 filters {filters}; gradq reads gzip, lzf, shuffle "
            "and fletcher32 only"
        )
    dtype = dataset.dtype
    if dtype.kind not in "uif" and h5py.check_string_dtype(dtype) is None:
        raise DatasetError(f"{path}: {name!r} has type {dtype}; expected numbers or strings")


def _set_keys(keys: set[str], path: Path) -> tuple[str, str]:
    """The one ``{split}_set_x``, ``{split}_set_y`` pair of the course layout."""
    prefixes = [k.removesuffix("_set_x") for k in sorted(keys) if k.endswith("_set_x")]
    pairs = [(f"{p}_set_x", f"{p}_set_y") for p in prefixes if f"{p}_set_y" in keys]
    if len(pairs) != 1:
        raise DatasetError(
            f"{path}: expected one pair of datasets like 'train_set_x', 'train_set_y' "
            f"(the course layout); found {sorted(keys)}"
        )
    return pairs[0]


def _class_names(dataset, path: Path, limits: DatasetLimits) -> tuple[str, ...]:
    """``list_classes``: (k,) byte or text strings, refused from its shape when too many."""
    h5py = _h5py()
    info = h5py.check_string_dtype(dataset.dtype)
    if info is None or dataset.ndim != 1:
        raise DatasetError(
            f"{path}: list_classes must be a 1-D string array, got {dataset.dtype} {dataset.shape}"
        )
    too_long = info.length is not None and info.length > 4 * limits.max_class_name_chars
    if dataset.shape[0] > limits.max_classes or too_long:
        raise DatasetError(
            f"{path}: class names {dataset.shape} {dataset.dtype} are over the limits of "
            f"{limits.max_classes} names of {limits.max_class_name_chars} characters"
        )
    names = []
    for name in dataset[()].tolist():
        if isinstance(name, bytes):
            try:
                name = name.decode()
            except UnicodeDecodeError as error:
                raise DatasetError(f"{path}: class names must be UTF-8 text ({error})") from error
        names.append(str(name))
    return tuple(names)


def _blocks(
    path: Path, key: str, shape: tuple, dtype: np.dtype, per_block: int, limits: DatasetLimits
) -> Iterator[np.ndarray]:
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as file:
            # Checked again: the file is opened anew, and may have been replaced meanwhile.
            dataset = _checked_root(file, path, limits).get(key)
            if dataset is None or dataset.shape != shape or dataset.dtype != dtype:
                raise DatasetError(f"{path}: {key!r} changed while it was read")
            for start in range(0, shape[0], per_block):
                yield dataset[start : start + per_block]
    except DatasetError:
        raise
    except H5_ERRORS as error:
        raise DatasetError(f"{path}: could not read HDF5 data ({error})") from error
