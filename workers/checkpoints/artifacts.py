"""Checkpoints in the MLflow tracking server's served artifacts (GRADQ_CHECKPOINT_STORE=mlflow):
the store that workers on hosts sharing no disk all reach over HTTP, with the guarantees of the
local folder (workers/checkpoints/local.py): a checkpoint is named by the sha256 of its bytes, so a
damaged or half-written one is skipped for the one before; resume is bit-exact.

Below ``gradq/checkpoints/``:

- ``<job id>/epoch-<epoch>-<token>-<sha256>.npz``: a checkpoint, without its history;
- ``<job id>.history/<token>-<start>-<end>.f64``: epochs [start, end) of the history, rows
  with their CRC-32 as in the local store.

A store (one attempt) has a token of its own, so a worker that lost the job without knowing it
yet never writes the new owner's files. An artifact cannot be appended to, so each save uploads
the rows new since the last one as a segment, merged with the trailing segments no longer than
it (a binary counter): a row is uploaded log2(saves)/2 + 1 times on average, never the whole
history at each save, and a resume downloads at most log2(saves) + 1 segments.

A file is uploaded whole before anything names it: the checkpoint after its segments, the
merged segment before the ones it replaces are deleted. HTTP errors are raised as MLflow's
client raises them (workers/mlflow_retry.py's ``unreachable`` tells the ones worth waiting for).
"""

import hashlib
import json
import logging
import re
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path, PurePosixPath

import numpy as np
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request, http_request_safe, verify_rest_response

from models.serialization import Checkpoint
from workers.checkpoints import KEEP, Saved, write_hashed
from workers.checkpoints.history import check_columns, decode_history, encode_history, history_rows

log = logging.getLogger(__name__)

ROOT = "gradq/checkpoints"
_CHECKPOINT = re.compile(r"epoch-(\d{9})-([0-9a-f]{32})-([0-9a-f]{64})\.npz")
_SEGMENT = re.compile(r"([0-9a-f]{32})-(\d{9})-(\d{9})\.f64")
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


class ArtifactCheckpointStore:
    def __init__(self, tracking_uri: str):
        if not tracking_uri.startswith(("http://", "https://")):
            raise ValueError("checkpoints in MLflow's artifacts need an http(s) tracking URI")
        # MLflow's own client: the credentials, TLS, timeout and retries of MLFLOW_* settings.
        self._creds = get_default_host_creds(tracking_uri.rstrip("/") + _ARTIFACTS)
        self._tokens: dict[str, str] = {}  # by job id: names this store's files
        self._segments: dict[str, list[tuple[int, int]]] = {}  # by job id: uploaded, in order

    # What a checkpoint costs does not grow with the epochs done: its file holds no history,
    # and a save uploads the history's new rows (merged with a few of the last segments).
    def save(self, job_id: str, checkpoint: Checkpoint, prune: bool = True) -> Saved:
        """Upload ``checkpoint``; then, unless told not to, keep only the newest KEEP."""
        job = _job(job_id)
        token = self._token(job_id, checkpoint.epoch)
        note = self._upload_history(job_id, token, checkpoint)
        stored = replace(checkpoint, note={**checkpoint.note, "history": note}) if note else None
        with tempfile.TemporaryDirectory(prefix="gradq-checkpoint-") as scratch:
            tmp, sha256 = write_hashed(
                Path(scratch),
                lambda file: (stored or checkpoint).write(file, history=stored is None),
            )
            path = job / f"epoch-{checkpoint.epoch:09d}-{token}-{sha256}.npz"
            self._put(path, tmp)
        if prune:
            self.prune(job_id)
        return Saved(path, checkpoint.epoch, sha256, f"mlflow-artifacts:/{ROOT}/{path}")

    def _token(self, job_id: str, epoch: int) -> str:
        """This store's token for the job; a new one (and no segments) if it goes back to an
        epoch before rows it uploaded, which its segments must never be mistaken for."""
        segments = self._segments.get(job_id)
        if job_id not in self._tokens or (segments and segments[-1][1] > epoch):
            self._tokens[job_id] = uuid.uuid4().hex
            self._segments[job_id] = []
        return self._tokens[job_id]

    def _upload_history(self, job_id: str, token: str, checkpoint: Checkpoint) -> dict | None:
        """Upload the history rows not uploaded yet; the note naming them, or None when the
        history goes inside the checkpoint (none, or not one value per epoch)."""
        history, epoch = checkpoint.history, checkpoint.epoch
        if not history or any(len(values) != epoch for values in history.values()):
            return None
        columns = sorted(history)
        segments = self._segments[job_id]
        start = segments[-1][1] if segments else 0
        replaced = []
        while segments and segments[-1][1] - segments[-1][0] <= epoch - start:
            replaced.append(segments.pop())
            start = replaced[-1][0]
        if start < epoch:
            rows = encode_history(history, columns, start, epoch)
            with tempfile.TemporaryDirectory(prefix="gradq-history-") as scratch:
                tmp = Path(scratch) / "rows"
                rows.tofile(tmp)
                self._put(_history(job_id) / _segment_name(token, start, epoch), tmp)
            segments.append((start, epoch))
        for old_start, old_end in replaced:  # what the new segment holds, uploaded first
            if (old_start, old_end) != (start, epoch):
                self._delete(_history(job_id) / _segment_name(token, old_start, old_end))
        return {"token": token, "columns": columns}

    def prune(self, job_id: str) -> None:
        """Remove all but the newest KEEP checkpoints of the job, and the history segments of
        the tokens no kept checkpoint names."""
        newest = self._newest_first(job_id)
        for name, _epoch, _token, _sha in newest[KEEP:]:
            self._delete(_job(job_id) / name)
        self._remove_history_unless_named(job_id, {token for _, _, token, _ in newest[:KEEP]})

    def remove(self, saved: Saved) -> None:
        """Remove one checkpoint, and its history if no other checkpoint names its token."""
        self._delete(PurePosixPath(saved.path))
        job_id = PurePosixPath(saved.path).parent.name
        kept = {token for _, _, token, _ in self._newest_first(job_id)}
        self._remove_history_unless_named(job_id, kept)

    def _remove_history_unless_named(self, job_id: str, kept_tokens: set[str]) -> None:
        for name in self._list(_history(job_id)):
            match = _SEGMENT.fullmatch(name)
            if match and match[1] not in kept_tokens:
                self._delete(_history(job_id) / name)

    def load_latest(self, job_id: str) -> Checkpoint | None:
        """The newest checkpoint whose bytes match its checksum and read as one, with its
        history, or None. MLflow unreachable: the error, raised (not "no checkpoint")."""
        segments = None  # listed once, when a checkpoint first needs them
        for name, epoch, _token, sha256 in self._newest_first(job_id):
            data = self._get(_job(job_id) / name)
            if data is None:  # pruned meanwhile by a newer save
                continue
            if hashlib.sha256(data).hexdigest() != sha256:
                log.warning("checkpoint %s of job %s is corrupt (checksum mismatch): skipped",
                            name, job_id)  # fmt: skip
                continue
            try:  # whole, yet unreadable: another format, or written that way
                checkpoint = Checkpoint.from_bytes(data)
                if checkpoint.epoch != epoch:
                    raise ValueError(f"holds epoch {checkpoint.epoch}, named {epoch}")
                note = checkpoint.note.get("history")
                if note:
                    if segments is None:
                        segments = self._list(_history(job_id))
                    history = self._read_history(job_id, note, epoch, segments)
                    checkpoint = replace(checkpoint, history=history)
                return checkpoint
            except ValueError as error:
                log.warning("checkpoint %s of job %s: %s: skipped", name, job_id, error)
        return None

    def _read_history(
        self, job_id: str, note: dict, epochs: int, listed: list[str]
    ) -> dict[str, np.ndarray]:
        """The first ``epochs`` rows of the history of the token ``note`` names, from the
        fewest segments that cover them; ValueError if one is missing, short or damaged."""
        token, columns = note.get("token"), note.get("columns")
        if not isinstance(token, str) or not re.fullmatch(r"[0-9a-f]{32}", token):
            raise ValueError(f"not a history token: {token!r}")
        check_columns(columns)
        ends: dict[int, int] = {}  # the furthest end of the token's segments, by start
        for name in listed:
            match = _SEGMENT.fullmatch(name)
            if match and match[1] == token:
                start, end = int(match[2]), int(match[3])
                ends[start] = max(ends.get(start, start), end)
        dtype = history_rows(len(columns))
        parts, position = [], 0
        while position < epochs:
            end = ends.get(position)
            if end is None:
                raise ValueError(f"history {token} has no rows from epoch {position}")
            name = _segment_name(token, position, end)
            data = self._get(_history(job_id) / name)
            if data is None or len(data) != (end - position) * dtype.itemsize:
                raise ValueError(f"history segment {name} is missing or not whole")
            rows = np.frombuffer(data, dtype)[: epochs - position]
            parts.append(decode_history(rows, columns, token, first_epoch=position))
            position = end
        return {column: np.concatenate([part[column] for part in parts]) for column in columns}

    def discard(self, job_id: str) -> None:
        """Remove the checkpoints of a job that ended. Never raises: what MLflow did not
        delete costs space only, and the job's end must not wait on it."""
        for folder in (_job(job_id), _history(job_id)):
            try:
                self._delete(folder)
            except Exception as error:
                log.warning("job %s: %s not deleted from MLflow's artifacts: %s",
                            job_id, folder, error)  # fmt: skip
        self._tokens.pop(job_id, None)
        self._segments.pop(job_id, None)

    def _newest_first(self, job_id: str) -> list[tuple[str, int, str, str]]:
        """(name, epoch, token, sha256) of the job's checkpoints; other names are ignored."""
        found = []
        for name in self._list(_job(job_id)):
            match = _CHECKPOINT.fullmatch(name)
            if match:
                found.append((name, int(match[1]), match[2], match[3]))
        return sorted(found, key=lambda item: item[1], reverse=True)

    # The served-artifacts REST API (mlflow/server/handlers.py): paths relative to ROOT.
    def _put(self, path: PurePosixPath, source: Path) -> None:
        with source.open("rb") as file:
            http_request_safe(self._creds, f"/{ROOT}/{path}", "PUT", data=file)

    def _get(self, path: PurePosixPath) -> bytes | None:
        endpoint = f"/{ROOT}/{path}"
        response = http_request(self._creds, endpoint, "GET")
        if response.status_code == 404:
            return None
        if response.status_code != 200:  # raised as MLflow's client raises it, with the status
            verify_rest_response(response, endpoint)
        return response.content

    def _list(self, folder: PurePosixPath) -> list[str]:
        """The names of the files in ``folder`` (none if it does not exist)."""
        response = http_request_safe(self._creds, "", "GET", params={"path": f"{ROOT}/{folder}"})
        files = json.loads(response.text).get("files", [])
        return [entry["path"] for entry in files if not entry.get("is_dir")]

    def _delete(self, path: PurePosixPath) -> None:
        http_request_safe(self._creds, f"/{ROOT}/{path}", "DELETE")


def _job(job_id: str) -> PurePosixPath:
    if not re.fullmatch(r"[0-9a-f]{1,64}", job_id):  # never a path outside the job's folder
        raise ValueError(f"not a job id: {job_id!r}")
    return PurePosixPath(job_id)


def _history(job_id: str) -> PurePosixPath:
    return PurePosixPath(_job(job_id).name + ".history")


def _segment_name(token: str, start: int, end: int) -> str:
    return f"{token}-{start:09d}-{end:09d}.f64"
