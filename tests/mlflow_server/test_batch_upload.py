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

from contract.artifact_batch import (
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


def tar_of(*members, format=tarfile.PAX_FORMAT) -> bytes:
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w", format=format) as tar:
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
        "1/run-a/artifacts/" + "long-" * 40 + "é.txt": b"a pax header's name",
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
}
KINDS = {
    "symlink": member("hostile/link", kind=tarfile.SYMTYPE, link="/etc/passwd"),
    "hard link": member("hostile/hard", kind=tarfile.LNKTYPE, link="hostile/good.txt"),
    "folder": member("hostile/folder", kind=tarfile.DIRTYPE),
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


def test_a_sparse_member_refuses_the_batch(server):
    before = stored(server)
    body = tar_of(GOOD, member("hostile/sparse", kind=tarfile.GNUTYPE_SPARSE),
                  format=tarfile.GNU_FORMAT)  # fmt: skip
    answer = put(server, body)
    assert answer.status_code == 400
    assert "only regular files" in answer.json()["message"]
    assert stored(server) == before


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
