"""Saved pyfunc models kept by network layout, one process's: a job's model is a copy of its
layout's, with an MLmodel of its own (the LoggedModel's ids), instead of a ``save_model`` of
its own. Saving also loads the model to check the input example against the signature: most
of the first part's CPU for a small job, and the same files for every trial of a sweep.

The templates live in a folder named as the artifacts' are (``gradq-artifacts-<pid>-``), so a
process that dies leaves nothing the next worker does not remove."""

import datetime
import hashlib
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from mlflow.models import Model

MAX_TEMPLATES = 8  # layouts a process keeps; the least recently used goes first


class ModelTemplates:
    def __init__(self, prefix: str, parent: Path | None = None):
        self._prefix, self._parent = prefix, parent  # parent: the temp folder by default
        self._root: Path | None = None
        self._saved: OrderedDict[str, Path] = OrderedDict()

    def copy(
        self, key_parts: tuple, save: Callable[[Path], None], to: Path, ids: Model | None
    ) -> None:
        """The model of the layout ``key_parts`` (``save(path)`` makes it, the first time)
        copied to ``to``, its MLmodel naming the LoggedModel of ``ids`` (if given)."""
        template = self._template(key_parts, save)
        shutil.copytree(template, to)
        if ids is None:
            return
        mlmodel = Model.load(template / "MLmodel")
        mlmodel.artifact_path, mlmodel.model_uuid = ids.artifact_path, ids.model_uuid
        mlmodel.model_id, mlmodel.run_id = ids.model_id, ids.run_id
        mlmodel.utc_time_created = str(datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
        mlmodel.save(to / "MLmodel")

    def _template(self, key_parts: tuple, save: Callable[[Path], None]) -> Path:
        key = hashlib.sha256(repr(key_parts).encode()).hexdigest()[:16]
        if key in self._saved:
            self._saved.move_to_end(key)
            return self._saved[key]
        if self._root is None or not self._root.is_dir():
            prefix = f"{self._prefix}{os.getpid()}-"
            self._root = Path(tempfile.mkdtemp(prefix=prefix, dir=self._parent))
            self._saved.clear()
        path = self._root / key
        shutil.rmtree(path, ignore_errors=True)  # what a failed save left
        save(path)
        self._saved[key] = path
        if len(self._saved) > MAX_TEMPLATES:
            _, oldest = self._saved.popitem(last=False)
            shutil.rmtree(oldest, ignore_errors=True)
        return path
