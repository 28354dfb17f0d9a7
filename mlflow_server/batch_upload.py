"""``PUT`` BATCH_ROUTE (mlflow_server/batch_format.py): a tar of files written to the server's
artifact destination, each by MLflow's own artifact repository as its upload route would.

The body is hostile until checked: it is refused (413) over MAX_BATCH_BYTES before it is all
read, and every member is checked before any is written. Only the tar gradq's workers send is
read, by the few lines below rather than by ``tarfile``: plain POSIX ustar headers of regular
files, checksums right, sizes in octal, each member's data inside the body. Every extension a
tar may carry (pax and GNU headers, long names, sparse files, links, devices, folders) is
refused: ``tarfile`` acts on them in ways a body can abuse (sizes that outgrow the body,
headers that take quadratic time to parse). Each name is a plain relative path MLflow's own
check accepts, named once, never a folder of another, at most MAX_BATCH_FILES of them. A refusal
is MLflow's error shape (``error_code``, ``message``) naming the member and the reason. Only
the store can refuse a member after others were written: a stored file where a folder must go
(409), or a failure of the store itself (500); the batch sent again overwrites what was.
"""

import asyncio
import json
import os
import posixpath
import tempfile
from dataclasses import dataclass
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

from mlflow_server.batch_format import (
    BATCH_ROUTE,
    MAX_BATCH_BYTES,
    MAX_BATCH_FILES,
    TAR_CONTENT_TYPE,
    is_plain_path,
)

router = APIRouter()
IN_MEMORY_BYTES = 8 * 2**20  # a larger body is spooled to a temporary file
BLOCK = 512  # a tar is headers and data in blocks of 512 bytes
REGULAR_FILE = (b"0", b"\0")  # ustar's type flags of a regular file
USTAR = b"ustar\x0000"  # POSIX ustar's magic and version
COPY_CHUNK = 2**20
SHOWN_NAME = 200  # characters of a member's name an error shows


class BatchError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Member:
    name: str
    path: str  # where it goes: the name, scoped to the request's workspace
    offset: int  # of its data in the body
    size: int


@router.put(BATCH_ROUTE)
async def upload_batch(request: Request) -> JSONResponse:
    try:
        if os.environ.get(SERVE_ARTIFACTS_ENV_VAR, "false") != "true":
            raise BatchError(503, "artifacts are not served: run mlflow server --serve-artifacts")
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != TAR_CONTENT_TYPE:
            raise BatchError(415, f"the body must be {TAR_CONTENT_TYPE}, not {content_type!r}")
        with tempfile.SpooledTemporaryFile(IN_MEMORY_BYTES) as body:
            size = await read_body(request, body)
            written = await asyncio.to_thread(write_members, body, size)
    except BatchError as refused:
        return error(refused.status, str(refused))
    except MlflowException as refused:  # from the artifact repository
        return JSONResponse(json.loads(refused.serialize_as_json()),
                            status_code=refused.get_http_status_code())  # fmt: skip
    return JSONResponse({"files": written})


def error(status: int, message: str) -> JSONResponse:
    code = "INVALID_PARAMETER_VALUE" if status < 500 else "INTERNAL_ERROR"
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


async def read_body(request: Request, body: BinaryIO) -> int:
    """The request's body into ``body``, refused as soon as it passes MAX_BATCH_BYTES; its
    size."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared[:20]) > MAX_BATCH_BYTES:
        raise BatchError(413, f"the body is {declared} bytes, over {MAX_BATCH_BYTES}")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BATCH_BYTES:
            raise BatchError(413, f"the body is over {MAX_BATCH_BYTES} bytes")
        await asyncio.to_thread(body.write, chunk)  # on disk past IN_MEMORY_BYTES
    return size


def write_members(body: BinaryIO, size: int) -> int:
    """Every member of the tar in ``body`` checked, then written in order; how many."""
    members = checked_members(body, size)
    repo = _get_artifact_repo_mlflow_artifacts()
    with tempfile.TemporaryDirectory() as scratch:
        for member in members:
            head, tail = posixpath.split(member.path)
            local = os.path.join(scratch, tail)
            body.seek(member.offset)
            with open(local, "wb") as target:
                for start in range(0, member.size, COPY_CHUNK):
                    target.write(body.read(min(COPY_CHUNK, member.size - start)))
            try:
                repo.log_artifact(local, artifact_path=head or None)
            except (IsADirectoryError, NotADirectoryError, FileExistsError):
                raise BatchError(409, f"member {shown(member.name)}: a stored file or folder "
                                      "is in its way") from None  # fmt: skip
            except OSError as failed:
                raise BatchError(500, f"member {shown(member.name)} not stored: {failed}") from None
            os.remove(local)
    return len(members)


def checked_members(body: BinaryIO, size: int) -> list[Member]:
    """The members of the tar in ``body`` (``size`` bytes), or BatchError naming the first
    that may not be written and why. Reads the headers, not the data."""
    members, offset = [], 0
    while True:
        body.seek(offset)
        header = body.read(BLOCK)
        if len(header) < BLOCK:
            raise BatchError(400, "the body is not a plain tar: it ends inside a header")
        if header == bytes(BLOCK):  # the end
            break
        if len(members) == MAX_BATCH_FILES:
            raise BatchError(400, f"more than {MAX_BATCH_FILES} files in one batch")
        name, data_size = read_header(header)
        data = offset + BLOCK
        if data + data_size > size:
            raise BatchError(400, f"member {shown(name)}: its data runs past the body's end")
        members.append(Member(name, artifact_path(name), data, data_size))
        offset = data + -(-data_size // BLOCK) * BLOCK
    if not members:
        raise BatchError(400, "the tar holds no file")
    check_names(members)
    return members


def read_header(header: bytes) -> tuple[str, int]:
    """A ustar header's name and data size, if it is a regular file's in plain ustar."""
    stored = header[148:156].rstrip(b"\0 ")
    summed = sum(header[:148]) + 8 * ord(" ") + sum(header[156:])
    if not is_octal(stored) or int(stored, 8) != summed or header[257:265] != USTAR:
        raise BatchError(400, "the body is not a plain tar: a header is not POSIX ustar's")
    name, prefix = header[:100].split(b"\0")[0], header[345:500].split(b"\0")[0]
    try:
        name = (prefix + b"/" + name if prefix else name).decode("utf-8")
    except UnicodeDecodeError:
        raise BatchError(400, "the body is not a plain tar: a name is not UTF-8") from None
    if header[156:157] not in REGULAR_FILE:
        raise BatchError(400, f"member {shown(name)}: only regular files are accepted")
    digits = header[124:136].strip(b"\0 ")
    if not is_octal(digits):  # no base-256
        raise BatchError(400, f"member {shown(name)}: its size is not an octal number")
    return name, int(digits, 8)


def is_octal(digits: bytes) -> bool:
    return bool(digits) and all(ord("0") <= digit <= ord("7") for digit in digits)


def check_names(members: list[Member]) -> None:
    """Each path once, and none a folder of another (a file and a folder of one name)."""
    paths = [member.path for member in members]
    folders = {posixpath.dirname(path) for path in paths} | {""}
    for folder in list(folders):
        while folder:
            folder = posixpath.dirname(folder)
            folders.add(folder)
    seen = set()
    for member in members:
        if member.path in seen:
            raise BatchError(400, f"member {shown(member.name)}: named twice")
        if member.path in folders:
            raise BatchError(400, f"member {shown(member.name)}: a folder of another member")
        seen.add(member.path)


def artifact_path(name: str) -> str:
    """Where member ``name`` goes: a plain path (batch_format.is_plain_path) that MLflow's
    upload accepts as it is, scoped to the request's workspace as MLflow's upload does."""
    try:
        safe = is_plain_path(name) and validate_path_is_safe(name) == name
    except Exception:  # MLflow's refusal, or a name its decoding cannot read
        safe = False
    if not safe:
        raise BatchError(400, f"member {shown(name)}: not a plain relative path")
    return _get_workspace_scoped_repo_path_if_enabled(name)


def shown(name: str) -> str:
    """``name`` as an error shows it: quoted, and cut if long."""
    return repr(name if len(name) <= SHOWN_NAME else name[:SHOWN_NAME] + "...")
