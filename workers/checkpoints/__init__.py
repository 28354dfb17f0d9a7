"""Checkpoints of running jobs, where any worker finds them: in a folder every worker reads
(local.py: the embedded default, and one host's workers, GRADQ_CHECKPOINT_STORE=local), or in
MLflow's served artifacts for workers on hosts that share no disk (artifacts.py, the same
format). writer.py is the training loop's callback that saves them; history.py the rows of
metrics they are read back with.

Each checkpoint file carries its own checksum in its name, so a corrupt or truncated newest
one is detected and the one before it is used; a file is whole before anything names it, and
the newest two are kept.

The run's history (one row of metrics per epoch) grows with the epochs, so it is not in the
checkpoint files, whose size would grow with it: each store writes the rows new since its last
save beside them, each row with its CRC-32, before the checkpoint that needs them. A
checkpoint names those rows and their columns, and is read back with the rows of its epochs.
A worker that lost the job without knowing it yet writes files of its own, never the new
owner's.
"""

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO

KEEP = 2  # checkpoints kept per job: the newest, and the one before in case it is damaged
_READ_BLOCK = 1 << 20  # bytes hashed at a time


@dataclass(frozen=True)
class Saved:
    path: PurePath  # in the store's folder
    epoch: int
    sha256: str
    uri: str  # what SQL records as the job's newest checkpoint


def store_for(settings):
    """The checkpoint store GRADQ_CHECKPOINT_STORE names: a folder (local.py), or MLflow's
    served artifacts."""
    # Imported here: both import this module.
    if settings.checkpoint_store == "mlflow":
        from workers.checkpoints.artifacts import ArtifactCheckpointStore

        return ArtifactCheckpointStore(settings.mlflow_tracking_uri)
    from workers.checkpoints.local import CheckpointStore

    return CheckpointStore(settings.checkpoints_folder)


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
