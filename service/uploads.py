"""Uploaded dataset files onto disk, within limits: a size cap per file, and zip archives
extracted only when every member stays inside the target folder, is stored or deflated, and
all of them together expand to a bounded size."""

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from models.datasets import DatasetError
from models.datasets.arrays import zip_entry_count
from service.errors import APIError

CHUNK_BYTES = 1024 * 1024
ZIP_EXPANSION_FACTOR = 4  # uncompressed bytes allowed per uploaded byte limit
IGNORED_ZIP_FOLDERS = ("__MACOSX",)
ZIP_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
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


def extract_zip(archive: Path, target: Path, max_bytes: int, max_members: int, field: str) -> None:
    """Extract ``archive`` into ``target``, refusing absolute paths, '..', symlinks, more than
    ``max_members`` members or more than ``max_bytes`` uncompressed (422)."""
    try:
        # Counted from the end record before zipfile reads every entry of the directory.
        _check_count(zip_entry_count(archive), max_members, field)
        zip_file = zipfile.ZipFile(archive)
    except (DatasetError, zipfile.BadZipFile, OSError) as error:
        raise unusable(field, f"{field} is not a readable zip archive ({error})") from error
    with zip_file:
        members = [m for m in zip_file.infolist() if not _ignored(m.filename)]
        _check_count(len(members), max_members, field)
        _check_members(members, max_bytes, field)
        written = 0
        for member in members:
            written += _extract_member(zip_file, member, target, max_bytes - written, field)


def _ignored(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and parts[0] in IGNORED_ZIP_FOLDERS


def _check_count(count: int, max_members: int, field: str) -> None:
    if count > max_members:
        raise unusable(field, f"{field} holds {count} entries, over the limit of {max_members}")


def _check_members(members: list[zipfile.ZipInfo], max_bytes: int, field: str) -> None:
    declared = sum(member.file_size for member in members)
    if declared > max_bytes:
        raise unusable(field, f"{field} expands to {declared} bytes, over {max_bytes}")
    for member in members:
        name = member.filename
        if member.compress_type not in ZIP_COMPRESSIONS or member.flag_bits & 0x1:
            raise unusable(
                field, f"{field}: {name!r} is encrypted or compressed other than by deflate"
            )
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
