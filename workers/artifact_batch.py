"""Files sent to an MLflow server's proxied artifacts (``mlflow-artifacts:`` URIs) a tar at a
time, by the batch upload of gradq's server (mlflow_server/batch_format.py), rather than a request
a file. A server without it (a plain ``mlflow server``: 404) is remembered, and its files go by
MLflow's own upload, as do a file too large for a batch and every other kind of store."""

import io
import logging
import math
import os
import tarfile
import threading
import time

from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.request_utils import augmented_raise_for_status
from mlflow.utils.rest_utils import http_request

from mlflow_server.batch_format import (
    BATCH_ROUTE,
    MAX_BATCH_BYTES,
    MAX_BATCH_FILES,
    TAR_CONTENT_TYPE,
    is_plain_path,
)

log = logging.getLogger(__name__)

SERVICE_ROOT = "/api/2.0/mlflow-artifacts/artifacts/"  # in a proxied repository's http URL
# The tar's end: two zero blocks, then padding to tarfile's 10240-byte record.
END_ROOM = 2 * 512 + tarfile.RECORDSIZE

File = tuple[str, str]  # (local path, path under the server's artifact root)

# Servers that answered 404 (a plain mlflow server), and when: asked again after a while, in
# case one started with --app-name gradq since.
_without_route: dict[str, float] = {}
ASK_AGAIN_SECONDS = 600.0
_without_route_lock = threading.Lock()


def served_path(repo) -> tuple[str, str] | None:
    """(the server's URL, the path under its artifact root) of a proxied repository, whose
    files a batch may carry; None for any other."""
    if not isinstance(repo, MlflowArtifactsRepository):
        return None
    server, found, path = repo.artifact_uri.partition(SERVICE_ROOT)
    return (server, path.strip("/")) if found else None


def batches(files: list[File]) -> tuple[list[list[File]], list[File]]:
    """``files``, in order, cut into batches that keep under the server's limits, and the
    files no batch can carry (too large, or a name plain ustar cannot hold)."""
    cut, alone, room, current = [], [], 0, []
    for local, path in files:
        needed = room_in_tar(path, os.stat(local).st_size)
        if needed is None or needed > MAX_BATCH_BYTES - END_ROOM:
            alone.append((local, path))
            continue
        full = room + needed > MAX_BATCH_BYTES - END_ROOM or len(current) == MAX_BATCH_FILES
        if current and full:
            cut.append(current)
            current, room = [], 0
        current.append((local, path))
        room += needed
    if current:
        cut.append(current)
    return cut, alone


def member(path: str, size: int) -> tarfile.TarInfo:
    """A regular file's ustar header: its name and size, nothing of the local file's kind,
    owner or time (a hard link or a symlink goes as the file it leads to)."""
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def room_in_tar(path: str, size: int) -> int | None:
    """The bytes a file takes in tar_of's tar (its header, its data padded to 512-byte
    blocks), or None if the batch may not carry it: a name the server refuses, or one plain
    ustar cannot hold (over 255 bytes, or not splittable)."""
    if not is_plain_path(path):
        return None
    try:
        member(path, size).tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    except ValueError:
        return None
    return tarfile.BLOCKSIZE + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def tar_of(files: list[File]) -> bytes:
    """A plain POSIX ustar tar of ``files``, each named by its artifact path, in order: the
    only tar the server reads (mlflow_server/batch_upload.py)."""
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w", format=tarfile.USTAR_FORMAT,
                      encoding="utf-8", errors="strict") as tar:  # fmt: skip
        for local, path in files:
            with open(local, "rb") as data:
                tar.addfile(member(path, os.fstat(data.fileno()).st_size), data)
    return body.getvalue()


def send(server: str, cut: list[list[File]]) -> bool:
    """Each batch of ``cut`` (as ``batches`` cuts them) written by ``server``'s batch upload,
    in order, a request a batch; False if it has none (nothing sent: asked again after
    ASK_AGAIN_SECONDS)."""
    with _without_route_lock:
        if time.monotonic() < _without_route.get(server, -math.inf) + ASK_AGAIN_SECONDS:
            return False
    creds = get_default_host_creds(server)
    for batch in cut:
        response = http_request(creds, BATCH_ROUTE, "PUT", data=tar_of(batch),
                                extra_headers={"Content-Type": TAR_CONTENT_TYPE})  # fmt: skip
        if response.status_code in (404, 405):
            with _without_route_lock:
                _without_route[server] = time.monotonic()
            log.info("%s has no batch upload (a plain mlflow server): a request a file", server)
            return False
        augmented_raise_for_status(response)
    return True
