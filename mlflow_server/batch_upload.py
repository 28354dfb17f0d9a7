"""``PUT`` BATCH_ROUTE (contract/artifact_batch.py): a tar of files written to the server's
artifact destination, each by MLflow's own artifact repository as its upload route would.

The body is hostile until checked: it is refused (413) over MAX_BATCH_BYTES before it is all
read, and every member is checked before any is written: a plain tar (no compression), regular
files only (no links, devices, folders or sparse files), each a plain relative path MLflow's
own check accepts, named once, at most MAX_BATCH_FILES of them. A refusal is MLflow's error
shape (``error_code``, ``message``) naming the member and the reason.
"""

import asyncio
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from typing import BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from mlflow.exceptions import MlflowException
from mlflow.server import SERVE_ARTIFACTS_ENV_VAR
from mlflow.server.handlers import (
    _get_artifact_repo_mlflow_artifacts,
    _get_workspace_scoped_repo_path_if_enabled,
)
from mlflow.utils.uri import validate_path_is_safe

from contract.artifact_batch import (
    BATCH_ROUTE,
    MAX_BATCH_BYTES,
    MAX_BATCH_FILES,
    TAR_CONTENT_TYPE,
)

router = APIRouter()
IN_MEMORY_BYTES = 8 * 2**20  # a larger body is spooled to a temporary file
PLAIN_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)


class BatchError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@router.put(BATCH_ROUTE)
async def upload_batch(request: Request) -> JSONResponse:
    try:
        if os.environ.get(SERVE_ARTIFACTS_ENV_VAR, "false") != "true":
            raise BatchError(503, "artifacts are not served: run mlflow server --serve-artifacts")
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != TAR_CONTENT_TYPE:
            raise BatchError(415, f"the body must be {TAR_CONTENT_TYPE}, not {content_type!r}")
        with tempfile.SpooledTemporaryFile(IN_MEMORY_BYTES) as body:
            await read_body(request, body)
            written = await asyncio.to_thread(write_members, body)
    except BatchError as refused:
        return error(refused.status, str(refused))
    except MlflowException as refused:  # from the artifact repository
        return JSONResponse(json.loads(refused.serialize_as_json()),
                            status_code=refused.get_http_status_code())  # fmt: skip
    return JSONResponse({"files": written})


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error_code": "INVALID_PARAMETER_VALUE", "message": message},
                        status_code=status)  # fmt: skip


async def read_body(request: Request, body: BinaryIO) -> None:
    """The request's body into ``body``, refused as soon as it passes MAX_BATCH_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BATCH_BYTES:
        raise BatchError(413, f"the body is {declared} bytes, over {MAX_BATCH_BYTES}")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BATCH_BYTES:
            raise BatchError(413, f"the body is over {MAX_BATCH_BYTES} bytes")
        body.write(chunk)
    body.seek(0)


def write_members(body: BinaryIO) -> int:
    """Every member of the tar in ``body`` checked, then written in order; how many."""
    try:
        with tarfile.open(fileobj=body, mode="r:") as tar:
            members = checked_members(tar)
            repo = _get_artifact_repo_mlflow_artifacts()
            with tempfile.TemporaryDirectory() as scratch:
                for member, path in members:
                    head, tail = posixpath.split(path)
                    local = os.path.join(scratch, tail)
                    with tar.extractfile(member) as source, open(local, "wb") as target:
                        shutil.copyfileobj(source, target)
                    repo.log_artifact(local, artifact_path=head or None)
                    os.remove(local)
    except tarfile.TarError as broken:
        raise BatchError(400, f"the body is not a plain tar: {broken}") from None
    return len(members)


def checked_members(tar: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, str]]:
    """Each member of ``tar`` with the path it is written to, or BatchError naming the first
    member that may not be written and why. Reads the members' headers, not their data."""
    members, names = [], set()
    while (member := tar.next()) is not None:
        if len(members) == MAX_BATCH_FILES:
            raise BatchError(400, f"more than {MAX_BATCH_FILES} files in one batch")
        name = member.name
        if member.type not in PLAIN_FILE_TYPES:
            raise BatchError(400, f"member {name!r}: only regular files are accepted")
        if name in names:
            raise BatchError(400, f"member {name!r}: named twice")
        names.add(name)
        members.append((member, artifact_path(name)))
    if not members:
        raise BatchError(400, "the tar holds no file")
    return members


def artifact_path(name: str) -> str:
    """Where member ``name`` goes: a path MLflow's upload accepts as it is (no ``..``, not
    absolute, no escapes) and a plain one (no empty or ``.`` part, no backslash, a separator
    on Windows, which MLflow checks for only there), scoped to the request's workspace as
    MLflow's upload does."""
    try:
        safe = validate_path_is_safe(name) == name  # it also decodes %-escapes: none here
    except MlflowException:
        safe = False
    plain = name not in ("", ".") and posixpath.normpath(name) == name and "\\" not in name
    if not safe or not plain:
        raise BatchError(400, f"member {name!r}: not a plain relative path")
    return _get_workspace_scoped_repo_path_if_enabled(name)
