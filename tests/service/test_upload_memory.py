"""The API's memory per upload stays bounded whatever the file declares: each bomb is sent to
a real uvicorn process, whose peak resident memory (VmHWM, reset before each upload) must
grow by less than UPLOAD_MEMORY_BOUND. The old checks decoded whole datasets: +1.1 GB for a
445 KB zip of two images, +2.4 GB for a 1 MB gzipped IDX file."""

import io
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.stack import api_command
from store.migrate import upgrade
from tests.hostile_files import (
    MIB,
    gzipped_idx,
    npy_header_only,
    npy_member,
    png_of_size,
    zip_of,
)
from tests.processes import gradq_env, start, wait_until
from tests.servers import free_port

UPLOAD_MEMORY_BOUND = 160 * MIB


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    home = tmp_path_factory.mktemp("upload-memory")
    upgrade(f"sqlite:///{home / 'gradq.db'}")
    port = free_port()
    env = gradq_env(home=home, max_dataset_bytes=1536 * MIB, max_upload_bytes=64 * MIB)
    process = start(api_command("127.0.0.1", port), home / "api.log", env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(url), process, "the API", 60)
    yield url, process.popen.pid
    process.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def peak_growth(pid: int, call) -> tuple[int, httpx.Response]:
    """How far the process's peak resident memory rose above its resident memory while
    ``call()`` ran, and what it returned."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib(pid, "VmHWM")
    response = call()
    return (_status_kib(pid, "VmHWM") - before) * 1024, response


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def upload(url: str, name: str, filename: str, content: bytes) -> httpx.Response:
    files = {"file": (filename, content, "application/octet-stream")}
    return httpx.post(f"{url}/v1/datasets", data={"name": name}, files=files, timeout=300)


def mnist_zip(images: bytes, m: int) -> bytes:
    labels = gzipped_idx((m,), bytes(i % 2 for i in range(m)))
    return zip_of({"train-images-idx3-ubyte.gz": images, "train-labels-idx1-ubyte.gz": labels})


def big_npz(m: int, n_x: int) -> bytes:
    """An honest .npz of m x n_x zero pixels, deflated as it is written: ~1/1000 of its size."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("y.npy", npy_member(np.arange(m) % 2))
        with archive.open("x.npy", "w") as member:
            member.write(npy_header_only((m, n_x), "|u1"))
            for _ in range(m):
                member.write(bytes(n_x))
    return buffer.getvalue()


BOMBS = {  # filename, content builder, expected status, a part of the answer
    "gzipped IDX declaring 8 GB": (
        "mnist.zip",
        lambda: mnist_zip(gzipped_idx((80, 10**4, 10**4), trailing_zeros=32 * MIB), 80),
        422,
        "once decoded",
    ),
    "gzipped IDX with 600 MB after an honest header": (
        "mnist.zip",
        lambda: mnist_zip(gzipped_idx((4, 28, 28), bytes(4 * 784), 600 * MIB), 4),
        422,
        "trailing bytes",
    ),
    "a small image, then one of 40 megapixels": (
        "pets.zip",
        lambda: zip_of({"a/0.png": png_of_size(4, 4), "b/0.png": png_of_size(8000, 5000)}),
        422,
        "per image",
    ),
    "an .npz header of 2**40 values": (
        "x.npz",
        lambda: zip_of(
            {"x.npy": npy_header_only((2**20, 2**20)), "y.npy": npy_member(np.arange(2))}
        ),
        422,
        "header",
    ),
    "an honest 1 GB (as float32) .npz of 300 KB": (
        "big.npz",
        lambda: big_npz(25_000, 10_000),
        201,
        "sha256",
    ),
}


@pytest.mark.parametrize(("filename", "build", "status", "answer"), BOMBS.values(), ids=list(BOMBS))
def test_the_apis_peak_memory_per_upload_stays_bounded(api, filename, build, status, answer):
    url, pid = api
    content = build()
    assert len(content) < 4 * MIB

    growth, response = peak_growth(pid, lambda: upload(url, f"d{free_port()}", filename, content))

    assert response.status_code == status, response.text
    assert answer in response.text
    assert growth < UPLOAD_MEMORY_BOUND, f"the API grew by {growth / MIB:.0f} MiB"
