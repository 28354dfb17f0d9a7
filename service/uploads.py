"""Uploaded dataset files onto disk, within limits: a size cap per file, and zip archives
extracted only when every member stays inside the target folder."""

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import h5py
from PIL import Image, UnidentifiedImageError

from models import DatasetError
from models.datasets.images import class_folders, image_files
from service.errors import APIError

CHUNK_BYTES = 1024 * 1024
MAX_ZIP_MEMBERS = 20_000
ZIP_EXPANSION_FACTOR = 4  # uncompressed bytes allowed per uploaded byte limit
IGNORED_ZIP_FOLDERS = ("__MACOSX",)
EXTRACT_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError,
                  NotImplementedError, ValueError)  # fmt: skip


def unusable(field: str, message: str) -> APIError:
    return APIError(422, "invalid_dataset", message, field)


def save_capped(source: BinaryIO, destination: Path, max_bytes: int, field: str) -> int:
    """Copy ``source`` to ``destination``; 413 once it passes ``max_bytes``. Returns the size."""
    size = 0
    with open(destination, "wb") as out:
        while chunk := source.read(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                message = f"{field} is over the limit of {max_bytes} bytes"
                raise APIError(413, "payload_too_large", message, field)
            out.write(chunk)
    return size


def extract_zip(archive: Path, target: Path, max_bytes: int, field: str) -> None:
    """Extract ``archive`` into ``target``, refusing absolute paths, '..', symlinks, more than
    MAX_ZIP_MEMBERS members or more than ``max_bytes`` uncompressed (422)."""
    try:
        zip_file = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise unusable(field, f"{field} is not a readable zip archive ({error})") from error
    with zip_file:
        members = [m for m in zip_file.infolist() if not _ignored(m.filename)]
        _check_members(members, max_bytes, field)
        written = 0
        for member in members:
            written += _extract_member(zip_file, member, target, max_bytes - written, field)


def _ignored(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and parts[0] in IGNORED_ZIP_FOLDERS


def _check_members(members: list[zipfile.ZipInfo], max_bytes: int, field: str) -> None:
    if len(members) > MAX_ZIP_MEMBERS:
        raise unusable(field, f"{field} holds {len(members)} entries, over {MAX_ZIP_MEMBERS}")
    declared = sum(member.file_size for member in members)
    if declared > max_bytes:
        raise unusable(field, f"{field} expands to {declared} bytes, over {max_bytes}")
    for member in members:
        name = member.filename
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or any(c in name for c in "\\:\0"):
            raise unusable(field, f"{field}: unsafe path {name!r} in the archive")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise unusable(field, f"{field}: symbolic link {name!r} in the archive")


def _extract_member(
    zip_file: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int, field: str
) -> int:
    """Write one member below ``target``; the bytes written, counted as they come (the sizes
    in a zip's directory can lie)."""
    destination = (target / member.filename).resolve()
    if not destination.is_relative_to(target.resolve()):
        raise unusable(field, f"{field}: unsafe path {member.filename!r} in the archive")
    written = 0
    try:
        if member.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            return 0
        destination.parent.mkdir(parents=True, exist_ok=True)
        with zip_file.open(member) as source, open(destination, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                written += len(chunk)
                if written > budget:
                    raise unusable(field, f"{field} expands past its uncompressed limit")
                out.write(chunk)
    except EXTRACT_ERRORS as error:  # a file where a folder goes, encryption, bad data...
        raise unusable(field, f"{field}: cannot extract {member.filename!r} ({error})") from error
    return written


def dataset_root(extracted: Path) -> Path:
    """The folder of class folders: ``extracted`` itself, or its single wrapping folder when
    the archive was made from a folder of class folders."""
    entries = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        children = [p for p in entries[0].iterdir() if not p.name.startswith(".")]
        if children and all(child.is_dir() for child in children):
            return entries[0]
    return extracted


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def check_decoded_size(kind: str, source: Path, limit: int, field: str) -> None:
    """422 for a dataset whose arrays would take over ``limit`` bytes once decoded: compressed
    images or arrays make a small upload a huge allocation. Unreadable sources pass here and
    are reported by the loader."""
    estimate = {"npz": _npz_bytes, "h5": _h5_bytes, "images": _image_bytes}[kind](source)
    if estimate > limit:
        raise unusable(field, f"{field} decodes to about {estimate} bytes, over {limit}")


def _npz_bytes(path: Path) -> int:
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return 0


def _h5_bytes(path: Path) -> int:
    sizes = []

    def add(_name, item) -> None:
        if isinstance(item, h5py.Dataset):
            sizes.append(item.size * item.dtype.itemsize)

    for h5_path in (path, path.with_name(path.name.replace("train", "test"))):
        try:
            with h5py.File(h5_path, "r") as file:
                file.visititems(add)
        except (OSError, ValueError, TypeError):
            continue
    return sum(sizes)


def _image_bytes(root: Path) -> int:
    """Every image at the first one's size, as RGB bytes: what the loader will allocate."""
    try:
        files = [image_files(folder) for folder in class_folders(root)]
        with Image.open(files[0][0]) as first:  # reads the header, not the pixels
            width, height = first.size
    except (DatasetError, OSError, UnidentifiedImageError, Image.DecompressionBombError):
        return 0
    return sum(len(names) for names in files) * width * height * 3
