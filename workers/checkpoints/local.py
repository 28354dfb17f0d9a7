"""The checkpoint store in a folder every worker of a host reads (GRADQ_CHECKPOINT_STORE=local).

``<folder>/<job id>/epoch-<epoch>-<sha256>.npz``, written atomically (temporary file, fsync,
rename); the history's rows in ``<folder>/<job id>.history/<token>.f64``, appended in place.
"""

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.serialization import Checkpoint
from workers.checkpoints import KEEP, Saved, write_hashed
from workers.checkpoints.history import check_columns, decode_history, encode_history, history_rows

log = logging.getLogger(__name__)

_NAME = re.compile(r"epoch-(\d+)-([0-9a-f]{64})\.npz")
HISTORY_SUFFIX = ".history"
_HISTORY_NAME = re.compile(r"[0-9a-f]{32}\.f64")


class CheckpointStore:
    def __init__(self, folder: Path):
        self.folder = folder
        self._token = uuid.uuid4().hex  # names this store's history files
        self._rows_written: dict[str, int] = {}  # by job id: epochs in this store's file
        self._notes: dict[Path, str | None] = {}  # history file each checkpoint names

    def save(self, job_id: str, checkpoint: Checkpoint, prune: bool = True) -> Saved:
        """Write ``checkpoint``; then, unless told not to, keep only the newest KEEP files.
        What this costs does not grow with the epochs done: only the history's new rows."""
        job_folder = self._job_folder(job_id)
        job_folder.mkdir(parents=True, exist_ok=True)
        note = self._append_history(job_id, checkpoint)
        stored = replace(checkpoint, note={**checkpoint.note, "history": note}) if note else None
        tmp, sha256 = write_hashed(
            job_folder, lambda file: (stored or checkpoint).write(file, history=stored is None)
        )
        path = job_folder / f"epoch-{checkpoint.epoch:09d}-{sha256}.npz"
        os.replace(tmp, path)
        _fsync_folder(job_folder)  # the rename itself survives a crash of the machine
        self._notes[path] = note["file"] if note else None
        if prune:
            self.prune(job_id)
        return Saved(path, checkpoint.epoch, sha256, str(path))

    def _append_history(self, job_id: str, checkpoint: Checkpoint) -> dict | None:
        """Write the history rows this store has not written yet; the note naming them, or
        None when the history goes inside the checkpoint (none, or not one value per epoch)."""
        history, epoch = checkpoint.history, checkpoint.epoch
        if not history or any(len(values) != epoch for values in history.values()):
            return None
        columns = sorted(history)
        folder = self._history_folder(job_id)
        path = folder / f"{self._token}.f64"
        new_file = not path.exists()
        start = 0 if new_file else min(self._rows_written.get(job_id, 0), epoch)
        rows = encode_history(history, columns, start, epoch)
        folder.mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, rows.tobytes(), start * rows.dtype.itemsize)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new_file:
            _fsync_folder(folder)
        self._rows_written[job_id] = epoch
        return {"file": path.name, "columns": columns}

    def prune(self, job_id: str) -> None:
        """Remove all but the newest KEEP checkpoints of the job, and the history files only
        the removed ones named."""
        newest = [path for path, _, _ in self._newest_first(job_id)]
        for old in newest[KEEP:]:
            history = self._history_file_of(old)
            old.unlink(missing_ok=True)
            self._notes.pop(old, None)
            self._remove_history_unless_named(job_id, history, newest[:KEEP])

    def remove(self, saved: Saved) -> None:
        """Remove one checkpoint (and its history file if no other names it), and its job's
        folders if that leaves them empty."""
        history = self._history_file_of(saved.path)
        saved.path.unlink(missing_ok=True)
        self._notes.pop(saved.path, None)
        job_id = saved.path.parent.name
        others = [path for path, _, _ in self._newest_first(job_id)]
        self._remove_history_unless_named(job_id, history, others)
        for folder in (self._history_folder(job_id), saved.path.parent):
            with contextlib.suppress(OSError):  # not empty: other files are in it
                folder.rmdir()

    def _remove_history_unless_named(self, job_id: str, name: str | None, kept) -> None:
        if name is not None and all(self._history_file_of(path) != name for path in kept):
            (self._history_folder(job_id) / name).unlink(missing_ok=True)

    def _history_file_of(self, path: Path) -> str | None:
        """The history file the checkpoint at ``path`` names (read from its meta once)."""
        if path not in self._notes:
            try:
                with np.load(path, allow_pickle=False) as npz:
                    note = json.loads(str(npz["meta"])).get("note", {}).get("history")
                self._notes[path] = note["file"] if note else None
            except Exception:  # unreadable: names nothing
                self._notes[path] = None
        return self._notes[path]

    def load_latest(self, job_id: str) -> Checkpoint | None:
        """The newest checkpoint whose bytes match its checksum and read as one, with its
        history, or None."""
        for path, _epoch, sha256 in self._newest_first(job_id):
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # pruned meanwhile by a newer save
                continue
            if hashlib.sha256(data).hexdigest() != sha256:
                log.warning("checkpoint %s is corrupt (checksum mismatch): skipped", path)
                continue
            try:  # whole, yet unreadable: another format, or written that way
                checkpoint = Checkpoint.from_bytes(data)
                note = checkpoint.note.get("history")
                if note:
                    history = self._read_history(job_id, note, checkpoint.epoch)
                    checkpoint = replace(checkpoint, history=history)
                return checkpoint
            except ValueError as error:
                log.warning("checkpoint %s: %s: skipped", path, error)
        return None

    def _read_history(self, job_id: str, note: dict, epochs: int) -> dict[str, np.ndarray]:
        """The first ``epochs`` rows of the history file ``note`` names; ValueError if it is
        missing, short or damaged."""
        name, columns = note.get("file"), note.get("columns")
        if not isinstance(name, str) or not _HISTORY_NAME.fullmatch(name):
            raise ValueError(f"not a history file name: {name!r}")
        check_columns(columns)
        path = self._history_folder(job_id) / name
        try:
            rows = np.fromfile(path, dtype=history_rows(len(columns)), count=epochs)
        except OSError as error:
            raise ValueError(f"history {name} not readable: {error}") from error
        if rows.size < epochs:
            raise ValueError(f"history {name} holds {rows.size} of {epochs} epochs")
        return decode_history(rows, columns, name)

    def discard(self, job_id: str) -> None:
        """Remove the checkpoints of a job that ended."""
        shutil.rmtree(self._job_folder(job_id), ignore_errors=True)
        shutil.rmtree(self._history_folder(job_id), ignore_errors=True)
        self._rows_written.pop(job_id, None)

    def _job_folder(self, job_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{1,64}", job_id):  # never a path outside the folder
            raise ValueError(f"not a job id: {job_id!r}")
        return self.folder / job_id

    def _history_folder(self, job_id: str) -> Path:
        return self._job_folder(job_id).with_name(job_id + HISTORY_SUFFIX)

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
