"""POST /v1/datasets against an attacker's files: each is a 422 naming the reason, never a 500,
never a row or a file left behind, never a byte of an outside file or a server path in the
answer."""

import os
from pathlib import Path

import numpy as np
import pytest

from tests import hostile_files as hostile
from tests.hostile_files import png_of_size, zip_of
from tests.leftovers import left_and_fresh
from tests.service.test_datasets import stored_datasets, upload


@pytest.fixture
def client(make_client, redis_queue):
    return make_client(broker_url=redis_queue.url, max_dataset_bytes=64 * hostile.MIB)


@pytest.fixture
def secret_file(tmp_path) -> Path:
    path = tmp_path / "outside" / "environ"
    path.parent.mkdir()
    path.write_bytes(hostile.SECRET)
    return path


def h5_upload(tmp_path: Path, **overrides) -> bytes:
    return hostile.course_h5(tmp_path / "upload.h5", **overrides).read_bytes()


def mnist_zip(images: bytes) -> bytes:
    labels = hostile.gzipped_idx((4,), bytes([0, 1, 0, 1]))
    return zip_of({"train-images-idx3-ubyte.gz": images, "train-labels-idx1-ubyte.gz": labels})


HOSTILE = {  # filename, builder(tmp_path, secret_file) -> bytes, a part of the reason
    "h5 class names in an outside file": (
        "x.h5",
        lambda t, s: h5_upload(
            t, list_classes=hostile.external(s, "S6", (len(hostile.SECRET) // 6,))
        ),
        "keeps its data in an outside file",
    ),
    "h5 labels in /proc/self/environ": (
        "x.h5",
        lambda t, s: h5_upload(
            t, train_set_y=hostile.external(Path(f"/proc/{os.getpid()}/environ"), "u1", (4,))
        ),
        "keeps its data in an outside file",
    ),
    "h5 soft link": (
        "x.h5",
        lambda t, s: h5_upload(t, train_set_y=hostile.soft_link("y", np.arange(4) % 2)),
        "SoftLink",
    ),
    "h5 external link": (
        "x.h5",
        lambda t, s: h5_upload(
            t, train_set_y=hostile.external_link(hostile.course_h5(t / "o.h5"), "/train_set_y")
        ),
        "ExternalLink",
    ),
    "h5 virtual dataset": (
        "x.h5",
        lambda t, s: h5_upload(
            t, train_set_y=hostile.virtual(hostile.course_h5(t / "o.h5"), "train_set_y", (4,), "i8")
        ),
        "virtual dataset",
    ),
    "h5 chunk bomb": (
        "x.h5",
        lambda t, s: h5_upload(t, train_set_x=hostile.one_element_chunks((4, 64, 64, 3))),
        "chunks, over the limit",
    ),
    "gzip bomb inside a zip": (
        "mnist.zip",
        lambda t, s: mnist_zip(hostile.gzipped_idx((4, 28, 28), trailing_zeros=64 * hostile.MIB)),
        "trailing bytes",
    ),
    "gzip header over the limit inside a zip": (
        "mnist.zip",
        lambda t, s: mnist_zip(hostile.gzipped_idx((4, 10**4, 10**4))),
        "once decoded",
    ),
    "npz with many members": (
        "x.npz",
        lambda t, s: hostile.npz_of(
            {f"a{i}.npy": hostile.npy_member(np.zeros(1)) for i in range(40)}
        ),
        "members, over the limit",
    ),
    "npz raw member": (
        "x.npz",
        lambda t, s: hostile.npz_of({"x.npy": b"raw", "y.npy": hostile.npy_member(np.arange(2))}),
        "could not read array 'x'",
    ),
    "npz header of 2**40 values": (
        "x.npz",
        lambda t, s: hostile.npz_of(
            {
                "x.npy": hostile.npy_header_only((2**20, 2**20)),
                "y.npy": hostile.npy_member(np.arange(2)),
            }
        ),
        "its header (1048576, 1048576)",
    ),
    "npz class names not utf-8": (
        "x.npz",
        lambda t, s: hostile.npz_of(
            {
                "x.npy": hostile.npy_member(np.zeros((2, 2))),
                "y.npy": hostile.npy_member(np.arange(2)),
                "classes.npy": hostile.npy_member(np.array([b"\xff", b"b"])),
            }
        ),
        "UTF-8",
    ),
    "large image after a small one": (
        "pets.zip",
        lambda t, s: zip_of({"a/0.png": png_of_size(2, 2), "b/0.png": png_of_size(6000, 5000)}),
        "over the limit of 25,000,000 per image",
    ),
    "large image before a small one": (
        "pets.zip",
        lambda t, s: zip_of({"a/0.png": png_of_size(6000, 5000), "b/0.png": png_of_size(2, 2)}),
        "over the limit of 25,000,000 per image",
    ),
    "images whose sum is over the limit": (
        "pets.zip",
        lambda t, s: zip_of({f"{c}/{i}.png": png_of_size(3000, 2000) for c in "ab" for i in "12"}),
        "decoding its images would take",
    ),
    "image of another format named png": (
        "pets.zip",
        lambda t, s: zip_of(
            {"a/0.png": hostile.npy_member(np.zeros(3)), "b/0.png": png_of_size(2, 2)}
        ),
        "corrupt or unreadable image",
    ),
    "class folder named with a control character": (
        "pets.zip",
        lambda t, s: zip_of({"a\tb/0.png": png_of_size(2, 2), "c/0.png": png_of_size(2, 2)}),
        "printable",
    ),
}


@pytest.mark.parametrize(("filename", "build", "reason"), HOSTILE.values(), ids=list(HOSTILE))
def test_a_hostile_upload_is_a_422_that_leaks_nothing_and_leaves_nothing(
    client, rows, tmp_path, secret_file, filename, build, reason
):
    response = upload(client, "candidate", filename, build(tmp_path, secret_file))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_dataset", "file")
    assert reason in error["message"]
    assert error["message"].startswith("candidate")
    assert "hunter2" not in response.text
    assert str(tmp_path) not in response.text and "/tmp/" not in response.text
    assert stored_datasets(rows, client) == (0, [])
    assert "hunter2" not in client.get("/v1/datasets").text


def test_a_dataset_name_no_upload_can_have_is_a_404_on_both_databases(client):
    for name in ("a%00b", "a%20b", "..", "x" * 300):
        response = client.get(f"/v1/datasets/{name}")
        assert response.status_code == 404, (name, response.text)


def test_staging_left_by_a_crashed_upload_is_removed_at_start_and_a_fresh_one_kept(make_client):
    first = make_client()
    staging = first.app.state.settings.datasets_folder / ".staging"
    old, fresh = left_and_fresh(staging, "0.png")

    make_client(home=first.app.state.settings.home)  # another start on the same data root

    assert not old.exists()
    assert (fresh / "part" / "0.png").exists()


def test_a_zip_of_more_entries_than_the_limit_is_refused_from_its_end_record(
    make_client, redis_queue, rows
):
    client = make_client(broker_url=redis_queue.url, max_dataset_files=10)
    members = {f"{c}/{i}.png": png_of_size(1, 1) for c in "ab" for i in range(6)}

    response = upload(client, "many", "many.zip", zip_of(members))

    assert response.status_code == 422
    assert "holds 12 entries, over the limit of 10" in response.json()["error"]["message"]
    assert stored_datasets(rows, client) == (0, [])
