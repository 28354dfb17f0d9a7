"""What a crashed process left in a scratch folder of its own: an upload's staging folder
(the API) or a dataset fetch under way (a worker)."""

import contextlib
import shutil
import time
from pathlib import Path

# Uploads and fetches take seconds to minutes: an entry untouched this long was left by a crash.
STALE_SECONDS = 3600


def remove_stale(folder: Path, older_than_seconds: float = STALE_SECONDS) -> None:
    """Remove the entries of ``folder`` untouched for that long (a newer one may be another
    process's work under way); a symlink is removed, never followed."""
    if not folder.is_dir():
        return
    cutoff = time.time() - older_than_seconds
    for entry in folder.iterdir():
        with contextlib.suppress(OSError):  # another process removed it first
            if entry.lstat().st_mtime >= cutoff:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
