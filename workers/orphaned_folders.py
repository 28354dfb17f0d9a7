"""The artifacts folders that worker processes which died (a pool child SIGKILLed mid-training)
left in the temp folder: each is named after its process, so a new pool child finds and
removes the ones whose process is gone."""

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_PREFIX = "gradq-artifacts-"  # then the process id and a random part


def folder_for_this_process() -> Path:
    """A new artifacts folder in the temp folder, named after this process."""
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))


def log_orphaned_folders_removed() -> None:
    """A new pool child (one replaces a child that died) clears what dead ones left."""
    for folder in remove_orphaned_folders():
        log.info("removed %s, left by a worker process that died", folder)


def remove_orphaned_folders(root: Path | None = None) -> list[Path]:
    """Remove the artifacts folders (in ``root``, the temp folder by default) of processes
    that died before removing their own, such as a worker child SIGKILLed mid-training;
    returns them. A folder of a live process, or of a name not ours, is left alone."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        match = re.fullmatch(rf"{TEMP_PREFIX}(\d+)-\w+", folder.name)
        if match and folder.is_dir() and not _process_alive(int(match[1])):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True
