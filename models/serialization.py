"""Weights and checkpoints on disk, as ``.npz`` files that load without pickle.

weights.npz holds the arrays W1, b1, W2, b2, ... and nothing else. A checkpoint holds everything
a resumed run needs to continue bit for bit: parameters, optimizer state, the history so far
(float64 arrays ``history/<name>``), and the shuffling RNG's state, the training settings and a
note, those three as JSON in a 0-d string array.
"""

import io
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from models.datasets.arrays import NPZ_READ_ERRORS

_PARAM_NAME = re.compile(r"[Wb][1-9][0-9]*")
# What np.load and the JSON inside raise on a truncated, corrupt or foreign file (TypeError: a
# bare .npy, which is no archive, or JSON that is not an object).
_READ_ERRORS = (*NPZ_READ_ERRORS, KeyError, TypeError)


def save_weights(params: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write params {"W1": (n[1], n[0]), "b1": (n[1], 1), ...} to ``path`` as .npz."""
    arrays = {name: np.asarray(value) for name, value in params.items()}
    wrong = [n for n, a in arrays.items() if not _PARAM_NAME.fullmatch(n) or a.dtype.kind != "f"]
    if wrong:
        raise ValueError(f"weights must be float arrays named W1, b1, ...; not {wrong}")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomically(path, buffer.getvalue())


def load_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read params written by ``save_weights``; ValueError if the file holds anything else."""
    with np.load(path, allow_pickle=False) as npz:
        names = list(npz.files)
        if not names or not all(_PARAM_NAME.fullmatch(n) for n in names):
            raise ValueError(f"{path}: expected arrays W1, b1, W2, b2, ...; found {names}")
        return {name: npz[name] for name in sorted(names, key=_layer_order)}


def _layer_order(name: str) -> tuple[int, bool]:
    return int(name[1:]), name[0] != "W"  # W1, b1, W2, b2, ...


@dataclass
class Checkpoint:
    """A training run's state after ``epoch`` completed epochs.

    params: {"W1": (n[1], n[0]), "b1": (n[1], 1), ...}; optimizer_state: the optimizer's arrays
    (velocities, moments, step count); rng_state: the shuffling generator's state;
    history: the metrics of epochs 0 .. epoch-1, {name: (epoch,) values} (float64 arrays when
    read back); config: the settings it was trained with; note: what whoever stores it keeps
    beside (JSON), such as where it keeps the history instead.
    """

    epoch: int
    params: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    rng_state: dict = field(default_factory=dict)
    history: dict[str, Sequence[float]] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    note: dict = field(default_factory=dict)

    def to_bytes(self, history: bool = True) -> bytes:
        buffer = io.BytesIO()
        self.write(buffer, history)
        return buffer.getvalue()

    def write(self, file: BinaryIO, history: bool = True) -> None:
        """The checkpoint as .npz into ``file``, array by array (no copy of the whole);
        history=False leaves the history out (its owner stores it elsewhere)."""
        arrays = {f"params/{k}": v for k, v in self.params.items()}
        arrays.update({f"optimizer/{k}": v for k, v in self.optimizer_state.items()})
        if history:
            arrays.update(
                {f"history/{k}": np.asarray(v, np.float64) for k, v in self.history.items()}
            )
        meta = {
            "epoch": self.epoch,
            "rng_state": self.rng_state,
            "config": self.config,
            "note": self.note,
        }
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(file, **arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Checkpoint":
        """The checkpoint in ``data``; ValueError if it is truncated, corrupt or not one."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                arrays = {
                    prefix: {
                        k.split("/", 1)[1]: npz[k] for k in npz.files if k.startswith(f"{prefix}/")
                    }
                    for prefix in ("params", "optimizer", "history")
                }
            fields = {key: meta[key] for key in ("epoch", "rng_state", "config")}
            history = arrays["history"] or {  # a checkpoint of an earlier gradq: JSON lists
                k: np.asarray(v, np.float64) for k, v in meta.get("history", {}).items()
            }
            note = meta.get("note", {})
        except _READ_ERRORS as error:
            raise ValueError(
                f"not a readable checkpoint ({type(error).__name__}: {error})"
            ) from error
        return cls(
            params=arrays["params"],
            optimizer_state=arrays["optimizer"],
            history=history,
            note=note,
            **fields,
        )

    def save(self, path: str | os.PathLike) -> None:
        write_atomically(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Checkpoint":
        """The checkpoint saved at ``path``; ValueError naming the file if it cannot be read."""
        try:
            return cls.from_bytes(Path(path).read_bytes())
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half:
    a temporary file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
