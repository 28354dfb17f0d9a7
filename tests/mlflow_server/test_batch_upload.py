"""The batch upload of gradq's MLflow server (mlflow_server/batch_upload.py), on a real
``mlflow server --app-name gradq``: a tar's files written where MLflow's own upload would put
them, and every hostile body refused with the member and the reason before anything is
written."""

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
import requests

from mlflow_server.batch_format import (
    BATCH_ROUTE,
    MAX_BATCH_BYTES,
    MAX_BATCH_FILES,
    TAR_CONTENT_TYPE,
)
from tests.processes import start_mlflow_server

TAR = {"Content-Type": TAR_CONTENT_TYPE}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch-upload")
    process = start_mlflow_server(folder / "mlflow")
    process.artifacts = folder / "mlflow" / "artifacts"
    yield process
    process.stop()


def put(server, body, headers=TAR) -> requests.Response:
    return requests.put(server.url + BATCH_ROUTE, data=body, headers=headers, timeout=60)


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    return info, data


def tar_of(*members, format=tarfile.USTAR_FORMAT, **options) -> bytes:
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w", format=format, encoding="utf-8", **options) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return body.getvalue()


def stored(server) -> dict[str, bytes]:
    root = server.artifacts
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_batch_is_written_where_mlflow_puts_an_upload(server):
    files = {
        "1/run-a/artifacts/spec.json": b'{"a": 1}',
        "1/models/m-1/artifacts/artifacts/weights.npz": os.urandom(70_000),
        "1/models/m-1/artifacts/MLmodel": b"flavors: {}\n",
        # Over ustar's 100 bytes of name: split into its prefix and name fields.
        "1/run-a/artifacts/" + "d" * 90 + "/é-a-long-path.txt": b"prefix and name",
        "1/run-a/artifacts/empty": b"",
    }
    answer = put(server, tar_of(*(member(name, data) for name, data in files.items())))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"files": len(files)}
    assert {name: stored(server)[name] for name in files} == files
    # Sent again (after a lost answer): the same files, overwritten.
    assert put(server, tar_of(*(member(n, d) for n, d in files.items()))).status_code == 200
    served = requests.get(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/1/models/m-1/artifacts/MLmodel",
        timeout=10,
    )
    assert served.content == files["1/models/m-1/artifacts/MLmodel"]


GOOD = member("hostile/good.txt", b"written only if the whole batch is")
NAMES = {
    "../escape.txt": "not a plain relative path",
    "hostile/../../escape.txt": "not a plain relative path",
    "/tmp/absolute.txt": "not a plain relative path",
    "hostile/./dot.txt": "not a plain relative path",
    "./hostile/dot.txt": "not a plain relative path",
    "hostile//double.txt": "not a plain relative path",
    "%2e%2e/escaped.txt": "not a plain relative path",
    "hostile\\back.txt": "not a plain relative path",
    "hostile/a#b.txt": "not a plain relative path",
    "hostile/control\x01.txt": "not a plain relative path",
    "%252525252525252525252541": "not a plain relative path",  # more escapes than MLflow reads
    "//[x": "not a plain relative path",  # MLflow's check takes it for a URL
    "hostile/.artifact.uploading.x": "not a plain relative path",  # MLflow's store's own
}
KINDS = {
    "symlink": member("hostile/link", kind=tarfile.SYMTYPE, link="/etc/passwd"),
    "hard link": member("hostile/hard", kind=tarfile.LNKTYPE, link="hostile/good.txt"),
    "folder": member("hostile/folder/", kind=tarfile.DIRTYPE),  # as tarfile names a folder
    "fifo": member("hostile/fifo", kind=tarfile.FIFOTYPE),
    "device": member("hostile/device", kind=tarfile.CHRTYPE),
    "contiguous": member("hostile/contiguous", kind=tarfile.CONTTYPE),
}


@pytest.mark.parametrize("name", NAMES)
def test_a_member_named_outside_its_place_refuses_the_batch(server, name):
    before = stored(server)
    answer = put(server, tar_of(GOOD, member(name, b"x")))
    assert answer.status_code == 400
    assert answer.json()["message"] == f"member {name!r}: {NAMES[name]}"
    assert stored(server) == before
    assert not (server.artifacts.parent / "escape.txt").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_anything_but_a_regular_file_refuses_the_batch(server, kind):
    before = stored(server)
    info, data = KINDS[kind]
    answer = put(server, tar_of(GOOD, (info, data)))
    assert answer.status_code == 400
    assert answer.json()["message"] == f"member {info.name!r}: only regular files are accepted"
    assert stored(server) == before


def with_field(body: bytes, start: int, value: bytes) -> bytes:
    """``body`` with its first header's field at ``start`` set to ``value``, its checksum
    made right again: a header only a hand-made tar would have."""
    header = bytearray(body[:512])
    header[start : start + len(value)] = value
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + body[512:]


ONE = tar_of(member("hostile/one.txt", b"x" * 10))
EXTENSIONS = {
    "a pax header": (tar_of(member("hostile/" + "p" * 300, b"x"), format=tarfile.PAX_FORMAT),
                     "member '././@PaxHeader': only regular files are accepted"),
    "a global pax header": (tar_of(GOOD, format=tarfile.PAX_FORMAT, pax_headers={"size": "9"}),
                            "member '././@PaxHeader': only regular files are accepted"),
    "a GNU long name": (tar_of(member("hostile/" + "g" * 300, b"x"), format=tarfile.GNU_FORMAT),
                        "the body is not a plain tar: a header is not POSIX ustar's"),
    "a GNU sparse file": (tar_of(member("hostile/s", kind=tarfile.GNUTYPE_SPARSE),
                                 format=tarfile.GNU_FORMAT),
                          "the body is not a plain tar: a header is not POSIX ustar's"),
    "a base-256 size": (with_field(ONE, 124, b"\x80" + bytes(10) + b"\x0a"),
                        "member 'hostile/one.txt': its size is not an octal number"),
    "a size past the body": (with_field(ONE, 124, b"77777777777\0"),
                             "member 'hostile/one.txt': its data runs past the body's end"),
    "a wrong checksum": (ONE[:148] + b"0000000\0" + ONE[156:],
                         "the body is not a plain tar: a header is not POSIX ustar's"),
    "a checksum not octal": (ONE[:148] + b"0000009\0" + ONE[156:],
                             "the body is not a plain tar: a header is not POSIX ustar's"),
    "a name not UTF-8": (with_field(ONE, 0, b"hostile/\xff.txt\0"),
                         "the body is not a plain tar: a name is not UTF-8"),
}  # fmt: skip


@pytest.mark.parametrize("case", EXTENSIONS)
def test_what_a_plain_ustar_tar_of_files_does_not_hold_is_refused(server, case):
    before = stored(server)
    body, message = EXTENSIONS[case]
    answer = put(server, body)
    assert (answer.status_code, answer.json()["message"]) == (400, message)
    assert stored(server) == before


def test_a_file_and_a_folder_of_one_name_refuse_the_batch(server):
    before = stored(server)
    answer = put(server, tar_of(member("hostile/a/b", b"1"), member("hostile/a", b"2")))
    assert answer.json()["message"] == "member 'hostile/a': a folder of another member"
    assert answer.status_code == 400 and stored(server) == before


def test_a_stored_file_in_the_way_is_a_conflict(server):
    assert put(server, tar_of(member("clash/f", b"a file"))).ok
    answer = put(server, tar_of(member("clash/f/g", b"under the file")))
    assert (answer.status_code, answer.json()["message"]) == (
        409, "member 'clash/f/g': a stored file or folder is in its way",
    )  # fmt: skip


def test_a_name_twice_refuses_the_batch(server):
    before = stored(server)
    answer = put(server, tar_of(GOOD, member("hostile/twice", b"1"), member("hostile/twice")))
    assert (answer.status_code, answer.json()["message"]) == (
        400, "member 'hostile/twice': named twice",
    )  # fmt: skip
    assert stored(server) == before


def test_more_files_than_allowed_refuses_the_batch(server):
    before = stored(server)
    body = tar_of(*(member(f"hostile/many/{i}", b"x") for i in range(MAX_BATCH_FILES + 1)))
    answer = put(server, body)
    assert answer.status_code == 400
    assert answer.json()["message"] == f"more than {MAX_BATCH_FILES} files in one batch"
    assert stored(server) == before
    assert put(server, tar_of(*(member(f"hostile/many/{i}", b"x") for i in range(3)))).ok


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(gzip.compress(tar_of(GOOD)), id="compressed"),
        pytest.param(os.urandom(4096), id="noise"),
        pytest.param(tar_of(GOOD)[:700], id="truncated"),
        pytest.param(tar_of(), id="empty"),
        pytest.param(b"", id="no body"),
    ],
)
def test_a_body_that_is_not_a_plain_tar_of_files_is_refused(server, body):
    before = stored(server)
    answer = put(server, body)
    assert answer.status_code == 400
    assert answer.json()["message"].startswith(("the body is not a plain tar", "the tar holds"))
    assert stored(server) == before


def test_another_content_type_is_refused(server):
    answer = put(server, tar_of(GOOD), {"Content-Type": "application/gzip"})
    assert answer.status_code == 415
    assert TAR_CONTENT_TYPE in answer.json()["message"]


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    declared = put(server, b"", {**TAR, "Content-Length": str(MAX_BATCH_BYTES + 1)})
    assert declared.status_code == 413
    assert (
        declared.json()["message"]
        == f"the body is {MAX_BATCH_BYTES + 1} bytes, over {MAX_BATCH_BYTES}"
    )
    chunk = bytes(2**20)
    # Chunked: no length declared, refused once the limit is passed.
    chunked = put(server, (chunk for _ in range(MAX_BATCH_BYTES // len(chunk) + 2)))
    assert chunked.status_code == 413
    assert f"over {MAX_BATCH_BYTES} bytes" in chunked.json()["message"]


def test_the_server_log_names_no_refusal_as_an_error(server):
    """Each refusal above is the client's fault: none is an exception in the server's log."""
    assert "Traceback" not in Path(server.log).read_text()
