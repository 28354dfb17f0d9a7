"""Folders a crashed process left behind in a scratch folder, beside one still in use."""

import os
import time
from pathlib import Path


def left_and_fresh(scratch: Path, name: str) -> tuple[Path, Path]:
    """(a folder untouched for two hours, one just made) in ``scratch``, each holding
    ``part/<name>``."""
    old, fresh = scratch / "crashed", scratch / "under-way"
    for folder in (old, fresh):
        (folder / "part").mkdir(parents=True)
        (folder / "part" / name).write_bytes(b"half a copy")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    return old, fresh
