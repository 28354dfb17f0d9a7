"""POST/GET /v1/datasets: uploads that are datasets are stored and usable by jobs; anything
else is refused with nothing left behind."""

import io
import stat
import zipfile

import h5py
import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from store.tables import Dataset

MAX_UPLOAD = 64 * 1024
MAX_DECODED = 1024 * 1024


@pytest.fixture
def client(make_client, redis_queue):
    return make_client(
        broker_url=redis_queue.url, max_upload_bytes=MAX_UPLOAD, max_dataset_bytes=MAX_DECODED
    )


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 5), color).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def class_folders_zip(prefix: str = "") -> bytes:
    members = {f"{prefix}cat/{i}.png": png((200, 10 * i, 0)) for i in range(3)}
    members |= {f"{prefix}dog/{i}.png": png((0, 10 * i, 200)) for i in range(2)}
    return zip_of(members)


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def h5_bytes(split: str, m: int) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        rng = np.random.default_rng(0)
        file[f"{split}_set_x"] = rng.integers(0, 256, (m, 4, 4, 3), dtype=np.uint8)
        file[f"{split}_set_y"] = np.arange(m) % 2
        file["list_classes"] = np.array([b"non-cat", b"cat"])
    return buffer.getvalue()


def upload(client, name: str, filename: str, content: bytes, test_file=None):
    files = {"file": (filename, content, "application/octet-stream")}
    if test_file is not None:
        files["test_file"] = test_file
    return client.post("/v1/datasets", data={"name": name}, files=files)


def stored_datasets(rows, client) -> tuple[int, list[str]]:
    """(rows in the datasets table, entries in the datasets folder but the empty staging)."""
    with rows() as session:
        count = session.scalar(select(func.count()).select_from(Dataset))
    folder = client.app.state.settings.datasets_folder
    entries = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    staging = folder / ".staging"
    if staging.exists() and not any(staging.iterdir()):
        entries.remove(".staging")
    return count, entries


def test_a_zip_of_class_folders_is_registered_and_stored(client, rows):
    response = upload(client, "pets", "pets.zip", class_folders_zip())

    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["name"], dataset["kind"]) == ("pets", "images")
    assert (dataset["n_x"], dataset["m"]) == (5 * 6 * 3, 5)
    assert dataset["classes"] == ["cat", "dog"]
    assert dataset["image_shape"] == [5, 6, 3]
    assert len(dataset["sha256"]) == 64
    assert stored_datasets(rows, client) == (1, ["pets"])
    with rows() as session:
        row = session.get(Dataset, "pets")
    assert (client.app.state.settings.datasets_folder / row.path / "cat" / "0.png").is_file()


def test_a_zip_with_one_wrapping_folder_finds_the_class_folders_inside(client):
    response = upload(client, "wrapped", "wrapped.zip", class_folders_zip("pets/"))

    assert response.status_code == 201, response.text
    assert response.json()["classes"] == ["cat", "dog"]


def test_an_npz_is_registered(client):
    x = np.random.default_rng(1).integers(0, 256, (12, 3, 3), dtype=np.uint8)
    y = np.arange(12) % 3

    response = upload(client, "tiny.v1", "tiny.npz", npz_bytes(x=x, y=y))

    assert response.status_code == 201, response.text
    assert (response.json()["kind"], response.json()["n_x"], response.json()["m"]) == ("npz", 9, 12)
    assert response.json()["classes"] == ["0", "1", "2"]


def test_a_course_h5_pair_is_registered_with_its_test_split(client, rows):
    test_file = ("test_catvnoncat.h5", h5_bytes("test", 4), "application/x-hdf5")

    response = upload(client, "cats", "train_catvnoncat.h5", h5_bytes("train", 10), test_file)

    assert response.status_code == 201, response.text
    assert response.json()["classes"] == ["non-cat", "cat"]
    assert (response.json()["n_x"], response.json()["m"]) == (48, 10)
    with rows() as session:
        folder = client.app.state.settings.datasets_folder / session.get(Dataset, "cats").path
    assert folder.with_name("test.h5").is_file()


def test_a_job_on_an_uploaded_dataset_is_accepted_and_fits_its_classes(client, redis_queue):
    upload(client, "pets", "pets.zip", class_folders_zip())

    response = client.post("/v1/jobs", json={"dataset": {"name": "pets"}})

    assert response.status_code == 202, response.text
    assert response.json()["spec"]["model"]["output"] == "sigmoid"
    assert redis_queue.messages() == [("gradq.train", [response.json()["id"]])]


def test_the_parameter_budget_counts_the_uploaded_datasets_features(make_client, redis_queue):
    client = make_client(broker_url=redis_queue.url, max_parameters=90 * 10 + 10)
    upload(client, "pets", "pets.zip", class_folders_zip())

    fits = client.post("/v1/jobs", json={"dataset": {"name": "pets"}})
    too_big = client.post(
        "/v1/jobs", json={"dataset": {"name": "pets"}, "model": {"hidden_layers": [10]}}
    )

    assert fits.status_code == 202
    assert too_big.status_code == 422
    assert too_big.json()["error"]["field"] == "model.hidden_layers"


def test_datasets_list_the_builtins_and_the_uploads(client):
    upload(client, "pets", "pets.zip", class_folders_zip())

    listed = {d["name"]: d for d in client.get("/v1/datasets").json()["datasets"]}

    assert set(listed) == {"digits", "faces", "pets"}
    assert listed["faces"]["kind"] == "builtin"
    assert (listed["faces"]["n_x"], listed["faces"]["m"]) == (625, 200)
    assert listed["digits"]["classes"] == [str(d) for d in range(10)]
    assert client.get("/v1/datasets/pets").json() == listed["pets"]
    assert client.get("/v1/datasets/faces").json() == listed["faces"]


def test_a_missing_dataset_is_a_json_404(client):
    response = client.get("/v1/datasets/nothing")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cat/0.png", png((1, 2, 3)))
        link = zipfile.ZipInfo("dog/0.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def bomb_zip() -> bytes:
    return zip_of({"cat/0.png": bytes(3 * MAX_UPLOAD), "dog/0.png": bytes(3 * MAX_UPLOAD)})


def big_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (9, 9, 9)).save(buffer, format="PNG")
    return buffer.getvalue()


def compressed_npz(values: int) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros((values, 1), dtype=np.uint8), y=np.arange(values) % 2)
    return buffer.getvalue()


def compressed_h5(values: int) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.create_dataset("train_set_x", data=np.zeros((values, 1, 1, 1), np.uint8),
                            compression="gzip")  # fmt: skip
        file.create_dataset("train_set_y", data=np.zeros(values, np.uint8), compression="gzip")
    return buffer.getvalue()


BOMB_VALUES = 2 * MAX_DECODED  # 8 times the decoded limit as float32, a few kilobytes


UNUSABLE = {  # filename, content, status, field, a word of the reason
    "garbage npz": ("x.npz", b"not an archive at all", 422, "file", "not an .npz"),
    "npz without y": ("x.npz", npz_bytes(x=np.zeros((3, 2, 2))), 422, "file", "missing"),
    "one class folder": ("one.zip", zip_of({"cat/0.png": png((0, 0, 0))}), 422, "file", "single"),
    "corrupt image": ("bad.zip", zip_of({"cat/0.png": b"x", "dog/0.png": b"y"}), 422, "file",
                      "corrupt"),
    "not a zip": ("x.zip", b"PK but not really", 422, "file", "not a readable zip"),
    "zip slip": ("slip.zip", zip_of({"../../evil.png": png((0, 0, 0))}), 422, "file", "unsafe"),
    "absolute path": ("abs.zip", zip_of({"/tmp/evil.png": png((0, 0, 0))}), 422, "file",
                      "unsafe"),
    "symlink": ("link.zip", symlink_zip(), 422, "file", "symbolic link"),
    "zip bomb": ("bomb.zip", bomb_zip(), 422, "file", "expands to"),
    "image bomb": ("big.zip", zip_of({"a/0.png": big_png(400), "b/0.png": big_png(400)}), 422,
                   "file", "once decoded"),
    "npz bomb": ("bomb.npz", compressed_npz(BOMB_VALUES), 422, "file", "once decoded"),
    "h5 bomb": ("bomb.h5", compressed_h5(BOMB_VALUES), 422, "file", "once decoded"),
    "file where a folder goes": ("clash.zip", zip_of({"cat": b"x", "cat/0.png": b"y"}), 422,
                                 "file", "cannot extract"),
    "unknown type": ("data.csv", b"1,2,3", 422, "file", "expected a .zip"),
    "oversize file": ("big.npz", bytes(MAX_UPLOAD + 1), 413, "file", "over the limit"),
    "oversize body": ("huge.npz", bytes(2 * MAX_UPLOAD + 1024 * 1024 + 1), 413, None, "over"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("filename", "content", "status", "field", "reason"),
    list(UNUSABLE.values()),
    ids=list(UNUSABLE),
)
def test_an_upload_that_is_not_a_dataset_is_refused_and_leaves_nothing(
    client, rows, filename, content, status, field, reason
):
    response = upload(client, "candidate", filename, content)

    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert reason in response.json()["error"]["message"]
    assert stored_datasets(rows, client) == (0, [])


def test_refusal_messages_name_the_upload_not_the_servers_folders(client):
    message = upload(client, "candidate", "x.npz", b"garbage").json()["error"]["message"]

    assert "candidate" in message
    assert str(client.app.state.settings.datasets_folder) not in message


def test_a_test_file_goes_with_an_h5_only(client, rows):
    x, y = np.zeros((4, 2, 2), dtype=np.uint8), np.arange(4) % 2
    test_file = ("test.h5", h5_bytes("test", 2), "application/x-hdf5")

    response = upload(client, "mixed", "data.npz", npz_bytes(x=x, y=y), test_file)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "test_file"
    assert stored_datasets(rows, client) == (0, [])


@pytest.mark.parametrize("name", ["", "-starts-with-dash", "has space", "a" * 65, "../up"])
def test_a_bad_dataset_name_is_422(client, name):
    response = upload(client, name, "pets.zip", class_folders_zip())

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "name"


@pytest.mark.parametrize("name", ["faces", "digits"])
def test_a_builtin_name_cannot_be_taken_by_an_upload(client, name):
    response = upload(client, name, "pets.zip", class_folders_zip())

    assert response.status_code == 409
    assert response.json()["error"]["field"] == "name"


def test_a_taken_name_is_409_and_keeps_the_first_upload(client, rows):
    first = upload(client, "pets", "pets.zip", class_folders_zip())

    second = upload(client, "pets", "other.zip", class_folders_zip("wrapped/"))

    assert second.status_code == 409
    assert client.get("/v1/datasets/pets").json()["sha256"] == first.json()["sha256"]
    assert stored_datasets(rows, client) == (1, ["pets"])


def test_a_streamed_body_without_length_is_cut_off_at_the_limit(client, rows):
    files = {"file": ("huge.npz", bytes(2 * MAX_UPLOAD + 1024 * 1024 + 1))}
    encoded = httpx.Request("POST", "http://api/", data={"name": "streamed"}, files=files)
    body, content_type = encoded.read(), encoded.headers["Content-Type"]

    response = client.post(
        "/v1/datasets", content=iter([body[:1000], body[1000:]]),
        headers={"Content-Type": content_type},
    )  # fmt: skip

    assert response.request.headers.get("Content-Length") is None
    assert response.status_code == 413
    assert stored_datasets(rows, client) == (0, [])
