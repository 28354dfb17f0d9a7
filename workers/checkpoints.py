"""Checkpoints of running jobs in a folder every worker reads: the embedded default, and one
host's workers (GRADQ_CHECKPOINT_STORE=local). Workers on hosts that share no disk keep them in
MLflow's served artifacts instead (workers/checkpoint_artifacts.py, the same format).

A job's checkpoints live in ``<folder>/<job id>/``, each named ``epoch-<epoch>-<sha256>.npz``:
the file carries its own checksum, so a corrupt or truncated newest one is detected and the
one before it is used. Files are written atomically (temporary file, fsync, rename) and the
newest two are kept.

The run's history (one row of metrics per epoch) grows with the epochs, so it is not in the
checkpoint files, whose size would grow with it: each store appends the rows new since its
last save, at their own positions, to a file of its own in ``<folder>/<job id>.history/``,
each row with its CRC-32, and fsyncs them before the checkpoint that needs them is written.
A checkpoint names that file and its columns, and is read back with the rows of its epochs. A
worker that lost the job without knowing it yet writes to its own file, never the new owner's.
"""

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from sqlalchemy import select

import store.jobs
from models.serialization import Checkpoint
from store.db import transaction
from store.tables import Job

if TYPE_CHECKING:  # it imports this module
    from workers.checkpoint_artifacts import ArtifactCheckpointStore

log = logging.getLogger(__name__)

KEEP = 2
_NAME = re.compile(r"epoch-(\d+)-([0-9a-f]{64})\.npz")
HISTORY_SUFFIX = ".history"
_HISTORY_NAME = re.compile(r"[0-9a-f]{32}\.f64")
_READ_BLOCK = 1 << 20  # bytes hashed at a time


@dataclass(frozen=True)
class Saved:
    path: PurePath  # in the store's folder
    epoch: int
    sha256: str
    uri: str  # what SQL records as the job's newest checkpoint


def history_rows(columns: int) -> np.dtype:
    """One epoch of a history file: its metrics (float64, in the note's column order) and
    the CRC-32 of their bytes."""
    return np.dtype([("values", "<f8", (columns,)), ("crc32", "<u8")])


def encode_history(history: dict, columns: list[str], start: int, end: int) -> np.ndarray:
    """Epochs [start, end) of ``history`` (metric name -> one value per epoch) as rows."""
    rows = np.empty(end - start, history_rows(len(columns)))
    for j, name in enumerate(columns):
        rows["values"][:, j] = np.asarray(history[name][start:end], np.float64)
    rows["crc32"] = [zlib.crc32(values.tobytes()) for values in rows["values"]]
    return rows


def decode_history(
    rows: np.ndarray, columns: list[str], name: str, first_epoch: int = 0
) -> dict[str, np.ndarray]:
    """The history ``rows`` (from ``first_epoch`` on) hold, by metric; ValueError naming
    ``name`` and the epoch at a damaged row."""
    for epoch, row in enumerate(rows, start=first_epoch):
        if zlib.crc32(row["values"].tobytes()) != row["crc32"]:
            raise ValueError(f"history {name} is corrupt at epoch {epoch}")
    return {column: rows["values"][:, j].copy() for j, column in enumerate(columns)}


def check_columns(columns) -> None:
    """ValueError unless a checkpoint's note names its history's columns as a list of names."""
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ValueError("the history's columns are not a list of names")


def store_for(settings):
    """The checkpoint store GRADQ_CHECKPOINT_STORE names: this module's folder, or MLflow's
    served artifacts."""
    if settings.checkpoint_store == "mlflow":
        from workers.checkpoint_artifacts import ArtifactCheckpointStore  # it imports this one

        return ArtifactCheckpointStore(settings.mlflow_tracking_uri)
    return CheckpointStore(settings.checkpoints_folder)


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


def write_hashed(folder: Path, write: Callable[[BinaryIO], None]) -> tuple[Path, str]:
    """A new temporary file in ``folder`` that ``write`` filled, fsynced, and the sha256 of its
    bytes, read back a block at a time (a file written in place, never held whole in memory)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".checkpoint.")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w+b") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
            file.seek(0)
            digest = hashlib.sha256()
            while block := file.read(_READ_BLOCK):
                digest.update(block)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointWriter:
    """The training loop's callback that stores each checkpoint where any worker finds it and
    records it (epoch, checksum) in SQL.

    A thread of its own writes them, so the training loop never waits on the disk's fsync or
    the database. Only the newest checkpoint waits its turn: one that a newer one overtook is
    never written (each supersedes the last), which bounds memory and what ``close()`` waits
    for. Nothing is written once ``lease_lost()`` says the job is another worker's. A
    checkpoint that cannot be written costs only the work since the previous one, so an error
    is logged, not raised."""

    def __init__(
        self,
        checkpoints: "CheckpointStore | ArtifactCheckpointStore",
        session_factory,
        job_id: str,
        owner: str,
        lease_lost: Callable[[], bool] = lambda: False,
        epochs: int | None = None,
    ):
        self.checkpoints = checkpoints
        self.epochs = epochs
        self.session_factory = session_factory
        self.job_id = job_id
        self.owner = owner
        self.lease_lost = lease_lost
        self.saved_epoch: int | None = None  # of the last checkpoint written and recorded
        self._newest: Checkpoint | None = None
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gradq-checkpoints")

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Have ``checkpoint`` (a copy the loop no longer touches) written soon; not the one
        after the last of the job's ``epochs``, which nothing would resume from: the job ends
        with its outcome (a worker lost before that retrains from the checkpoint before)."""
        if checkpoint.epoch == self.epochs:
            return
        with self._lock:
            self._newest = checkpoint
        self._thread.submit(self._write_newest)

    def _write_newest(self) -> None:
        with self._lock:
            checkpoint, self._newest = self._newest, None
        if checkpoint is not None:  # None: a later call already wrote it
            self.save(checkpoint)

    def save(self, checkpoint: Checkpoint) -> bool:
        """Write ``checkpoint`` now; True if it is on disk and recorded as the job's newest."""
        if self.lease_lost():
            return False
        try:
            # Older files are pruned only once SQL took this one: a worker that lost the job
            # without knowing it yet must not prune, or leave behind, the new owner's files.
            saved = self.checkpoints.save(self.job_id, checkpoint, prune=False)
            with transaction(self.session_factory) as session:
                recorded = store.jobs.record_checkpoint(
                    session, self.job_id, self.owner, saved.uri, saved.epoch, saved.sha256
                )
                # Not recorded: the job is another worker's, or over. Same name as its newest:
                # the new owner wrote the same bytes, and the file is its.
                theirs = not recorded and saved.uri == session.scalar(
                    select(Job.checkpoint_uri).where(Job.id == self.job_id)
                )
        except Exception:
            log.exception("job %s: checkpoint at epoch %d not saved", self.job_id, checkpoint.epoch)
            return False
        if recorded:
            self.saved_epoch = saved.epoch
        elif not theirs:
            log.warning("job %s is not this worker's: checkpoint removed", self.job_id)
        try:  # what is not removed now goes with the job's other files when it ends
            if recorded:
                self.checkpoints.prune(self.job_id)
            elif not theirs:
                self.checkpoints.remove(saved)
        except Exception:
            log.exception("job %s: older checkpoints not removed", self.job_id)
        return recorded

    def close(self) -> None:
        """Wait until the checkpoint pending, if any, is written (or failed)."""
        self._thread.shutdown(wait=True)
