"""A job's history (one row of metrics per epoch) as checkpoints store it beside themselves:
each row float64 values in the note's column order and the CRC-32 of their bytes."""

import zlib

import numpy as np


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
