"""An .npz with x (m, ...), y (m,) and optionally classes (k,), x_test, y_test.

Before any array is read: the member count is capped; each member gradq reads must be a .npy
file, stored or deflated (no other compression, no encryption), whose header declares a plain
numeric or string dtype (never objects, which would need unpickling) and exactly as many bytes
as the member holds. Examples are then read a block at a time; nothing is unpickled.
"""

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrays import NPZ_READ_ERRORS, ZIP_MAGICS, starts_with, unreadable, zip_entry_count
from .dataset import DatasetError
from .limits import DatasetLimits, nbytes
from .stored import StoredDataset, StoredRows, check_labels_header, stored_dataset

COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


@dataclass(frozen=True)
class Member:
    """One .npy inside the archive, as its header describes it."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int  # where the array's bytes start in the member

    @property
    def data_bytes(self) -> int:
        return nbytes(self.shape, self.dtype.itemsize)


def inspect_npz(path: Path, limits: DatasetLimits) -> StoredDataset:
    """What the archive holds, its labels and class names read; the examples not yet."""
    if not starts_with(path, ZIP_MAGICS):
        raise DatasetError(f"{path}: not an .npz archive (not a zip file)")
    _check_member_count(zip_entry_count(path), path, limits)
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members(archive, path, limits)
            if "classes" in members:
                _check_class_names_header(members["classes"], path, limits)
            x = _rows(path, members["x"], str(path))
            splits = {"y": x}
            if "x_test" in members:
                splits["y_test"] = _rows(path, members["x_test"], f"{path} (x_test)")
            for key, rows in splits.items():
                labels = members[key]
                check_labels_header(rows, labels.shape, labels.dtype.itemsize, limits)
            small = {
                key: _read_whole(archive, members[key])
                for key in ("y", "y_test", "classes")
                if key in members
            }
    except DatasetError:
        raise
    except NPZ_READ_ERRORS as error:
        raise unreadable(path, "the archive", error) from error
    classes = _class_names(small["classes"], path) if "classes" in small else None
    test = (splits["y_test"], small["y_test"]) if "y_test" in splits else None
    return stored_dataset(path.stem, (x, small["y"]), classes, limits, test)


def _members(archive: zipfile.ZipFile, path: Path, limits: DatasetLimits) -> dict[str, Member]:
    """The members gradq reads (x, y, and those present of classes, x_test, y_test), headers
    checked; the others are never opened."""
    infos = archive.infolist()
    _check_member_count(len(infos), path, limits)
    arrays = {info.filename.removesuffix(".npy"): info for info in infos}
    missing = {"x", "y"} - arrays.keys()
    if missing:
        raise DatasetError(
            f"{path}: missing array(s) {sorted(missing)}; found {sorted(arrays)}, "
            "expected x (m, ...) and y (m,)"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DatasetError(f"{path}: x_test and y_test must be saved together")
    wanted = ("x", "y", "classes", "x_test", "y_test")
    return {key: _member(archive, arrays[key], path) for key in wanted if key in arrays}


def _check_member_count(count: int, path: Path, limits: DatasetLimits) -> None:
    if count > limits.max_npz_members:
        raise DatasetError(f"{path}: {count} members, over the limit of {limits.max_npz_members}")


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Member:
    key = info.filename.removesuffix(".npy")
    if not info.filename.endswith(".npy"):
        raise DatasetError(f"{path}: member {info.filename!r} is not a .npy array")
    if info.compress_type not in COMPRESSIONS or info.flag_bits & 0x1:
        raise DatasetError(
            f"{path}: array '{key}' is encrypted or compressed with a method other than "
            "deflate; save it with np.savez or np.savez_compressed"
        )
    with archive.open(info) as file:
        try:
            version = np.lib.format.read_magic(file)
            if version not in HEADER_READERS:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, fortran_order, dtype = HEADER_READERS[version](file)
        except ValueError as error:
            raise unreadable(path, f"array '{key}'", error) from error
        offset = file.tell()
    if dtype.hasobject:
        raise DatasetError(
            f"{path}: array '{key}' contains pickled objects, which are never loaded"
        )
    if dtype.names is not None or dtype.subdtype is not None:
        raise DatasetError(f"{path}: array '{key}' has a structured dtype {dtype}")
    member = Member(info, tuple(int(d) for d in shape), dtype, fortran_order, offset)
    if info.file_size != offset + member.data_bytes:
        raise DatasetError(
            f"{path}: array '{key}' holds {info.file_size - offset} bytes but its header "
            f"{member.shape} {dtype} needs {member.data_bytes}"
        )
    return member


def _read_whole(archive: zipfile.ZipFile, member: Member) -> np.ndarray:
    """A small array (labels, class names), its size checked from its header."""
    with archive.open(member.info) as file:
        return np.lib.format.read_array(file, allow_pickle=False)


def _check_class_names_header(member: Member, path: Path, limits: DatasetLimits) -> None:
    """Refuse class names too many or too long from the header, before they are read."""
    count = member.shape[0] if len(member.shape) == 1 else 0
    chars = member.dtype.itemsize // (4 if member.dtype.kind == "U" else 1)
    if count > limits.max_classes or chars > limits.max_class_name_chars:
        raise DatasetError(
            f"{path}: class names {member.shape} {member.dtype} are over the limits of "
            f"{limits.max_classes} names of {limits.max_class_name_chars} characters"
        )


def _rows(path: Path, member: Member, source: str) -> StoredRows:
    # A Fortran-ordered array (np.savez of a transposed X) has no row blocks: read whole.
    held = member.data_bytes if member.fortran_order else 0
    return StoredRows(
        source, member.shape, member.dtype, lambda k: _blocks(path, member, k, source), held
    )


def _blocks(path: Path, member: Member, per_block: int, source: str) -> Iterator[np.ndarray]:
    m, example = member.shape[0], member.shape[1:]
    row_bytes = nbytes(example, member.dtype.itemsize)
    try:
        with zipfile.ZipFile(path) as archive, archive.open(member.info) as file:
            if member.fortran_order:
                whole = np.lib.format.read_array(file, allow_pickle=False)
                for start in range(0, m, per_block):
                    yield whole[start : start + per_block]
                return
            file.seek(member.data_offset)
            for start in range(0, m, per_block):
                count = min(per_block, m - start)
                data = file.read(count * row_bytes)
                if len(data) != count * row_bytes:
                    raise DatasetError(f"{source}: the array is truncated")
                yield np.frombuffer(data, dtype=member.dtype).reshape(count, *example)
    except DatasetError:
        raise
    except NPZ_READ_ERRORS as error:
        raise unreadable(path, "the archive", error) from error


def _class_names(names: np.ndarray, source: Path | str) -> tuple[str, ...]:
    """(k,) str or bytes array -> k names; bytes must be UTF-8."""
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DatasetError(
            f"{source}: class names must be a 1-D string array, got {names.dtype} {names.shape}"
        )
    try:
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
    except UnicodeDecodeError as error:
        raise DatasetError(f"{source}: class names must be UTF-8 text ({error})") from error
