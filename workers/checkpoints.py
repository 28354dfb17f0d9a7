"""Checkpoints of running jobs in a folder every worker reads (a shared volume in compose).

A job's checkpoints live in ``<folder>/<job id>/``, each named ``epoch-<epoch>-<sha256>.npz``:
the file carries its own checksum, so a corrupt or truncated newest one is detected and the
one before it is used. Files are written atomically (temporary file, fsync, rename) and the
newest two are kept.
"""

import contextlib
import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from models.serialization import Checkpoint, write_atomically

log = logging.getLogger(__name__)

KEEP = 2
_NAME = re.compile(r"epoch-(\d+)-([0-9a-f]{64})\.npz")


@dataclass(frozen=True)
class Saved:
    path: Path
    epoch: int
    sha256: str


class CheckpointStore:
    def __init__(self, folder: Path):
        self.folder = folder

    def save(self, job_id: str, checkpoint: Checkpoint, prune: bool = True) -> Saved:
        """Write ``checkpoint``; then, unless told not to, keep only the newest KEEP files."""
        data = checkpoint.to_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        job_folder = self._job_folder(job_id)
        job_folder.mkdir(parents=True, exist_ok=True)
        path = job_folder / f"epoch-{checkpoint.epoch:09d}-{sha256}.npz"
        write_atomically(path, data)
        _fsync_folder(job_folder)  # the rename itself survives a crash of the machine
        if prune:
            self.prune(job_id)
        return Saved(path, checkpoint.epoch, sha256)

    def prune(self, job_id: str) -> None:
        """Remove all but the newest KEEP checkpoints of the job."""
        for old in self._newest_first(job_id)[KEEP:]:
            old[0].unlink(missing_ok=True)

    def remove(self, saved: Saved) -> None:
        """Remove one checkpoint, and its job's folder if that leaves it empty."""
        saved.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: other checkpoints are in it
            saved.path.parent.rmdir()

    def load_latest(self, job_id: str) -> Checkpoint | None:
        """The newest checkpoint whose bytes match its checksum and read as one, or None."""
        for path, _epoch, sha256 in self._newest_first(job_id):
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # pruned meanwhile by a newer save
                continue
            if hashlib.sha256(data).hexdigest() != sha256:
                log.warning("checkpoint %s is corrupt (checksum mismatch): skipped", path)
                continue
            try:  # whole, yet unreadable: another format, or written that way
                return Checkpoint.from_bytes(data)
            except ValueError as error:
                log.warning("checkpoint %s: %s: skipped", path, error)
        return None

    def discard(self, job_id: str) -> None:
        """Remove the checkpoints of a job that ended."""
        shutil.rmtree(self._job_folder(job_id), ignore_errors=True)

    def _job_folder(self, job_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{1,64}", job_id):  # never a path outside the folder
            raise ValueError(f"not a job id: {job_id!r}")
        return self.folder / job_id

    def _newest_first(self, job_id: str) -> list[tuple[Path, int, str]]:
        folder = self._job_folder(job_id)
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            match = _NAME.fullmatch(path.name)
            if match:
                found.append((path, int(match[1]), match[2]))
        return sorted(found, key=lambda item: item[1], reverse=True)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
