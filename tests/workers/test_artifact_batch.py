"""A run's folders uploaded to MLflow (workers/artifacts.py upload) through gradq's batch upload
(workers/artifact_batch.py): one request for a folder of files on gradq's server, a request a file
on a plain ``mlflow server``, the same files either way; and batches cut to the server's limits."""

import io
import os
import re
import tarfile
import time

import pytest
from mlflow.tracking import MlflowClient

from mlflow_server.batch_format import BATCH_ROUTE, MAX_BATCH_BYTES, MAX_BATCH_FILES
from tests.processes import start_mlflow_server
from workers import artifact_batch
from workers.artifacts import upload

UPLOAD = re.compile(r'"PUT /api/2\.0/mlflow-artifacts/artifacts/\S+ HTTP/1\.1" 200')
BATCH = re.compile(rf'"PUT {re.escape(BATCH_ROUTE)} HTTP/1\.1" (\d+)')


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    server = start_mlflow_server(tmp_path_factory.mktemp("plain-mlflow"), plain=True)
    yield server
    server.stop()


def requests_seen(server, expected: tuple[int, list[str]]) -> tuple[int, list[str]]:
    """(file uploads, batch answers' statuses) in the server's access log, once they reach
    ``expected`` (uvicorn writes a line after its answer) or after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        text = server.log_text()
        seen = len(UPLOAD.findall(text)), BATCH.findall(text)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def folder_of_files(root, count: int) -> dict[str, bytes]:
    files = {f"file-{i}.txt": os.urandom(100 * i) for i in range(count)}
    files["sub/deeper/weights.npz"] = os.urandom(20_000)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def downloaded(client: MlflowClient, run_id: str, names, into) -> dict[str, bytes]:
    return {name: open(client.download_artifacts(run_id, name, str(into)), "rb").read()
            for name in names}  # fmt: skip


def test_a_folder_goes_up_in_one_request_to_gradqs_server(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    run = client.create_run(client.create_experiment("batched")).info
    files = folder_of_files(tmp_path / "files", 12)
    uploads, batches = requests_seen(mlflow_server, (-1, []))  # before
    upload(client, [(run.artifact_uri, str(tmp_path / "files"))])
    assert requests_seen(mlflow_server, (uploads, [*batches, "200"])) == (
        uploads, [*batches, "200"],
    )  # fmt: skip
    assert downloaded(client, run.run_id, files, tmp_path / "back") == files


def test_a_plain_mlflow_server_gets_a_request_a_file(plain_server, tmp_path):
    client = MlflowClient(plain_server.url)
    files = folder_of_files(tmp_path / "files", 5)
    for attempt in range(2):
        run = client.create_run(client.create_experiment(f"plain-{attempt}")).info
        upload(client, [(run.artifact_uri, str(tmp_path / "files"))])
        assert downloaded(client, run.run_id, files, tmp_path / f"back-{attempt}") == files
    # The batch route asked for once: its 404 is remembered.
    assert requests_seen(plain_server, (2 * len(files), ["404"])) == (2 * len(files), ["404"])


def test_a_file_too_large_for_a_batch_goes_by_itself(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    run = client.create_run(client.create_experiment("too-large")).info
    files = folder_of_files(tmp_path / "files", 3)
    large = tmp_path / "files" / "large.bin"
    with open(large, "wb") as out:
        out.truncate(MAX_BATCH_BYTES)  # over what a batch holds once headers are counted
    uploads, batches = requests_seen(mlflow_server, (-1, []))
    upload(client, [(run.artifact_uri, str(tmp_path / "files"))])
    assert requests_seen(mlflow_server, (uploads + 1, [*batches, "200"])) == (
        uploads + 1, [*batches, "200"],
    )  # fmt: skip
    assert downloaded(client, run.run_id, files, tmp_path / "back") == files
    back = client.download_artifacts(run.run_id, "large.bin", str(tmp_path / "back"))
    assert os.path.getsize(back) == MAX_BATCH_BYTES


def sized(folder, sizes: list[int]) -> list[tuple[str, str]]:
    files = []
    for i, size in enumerate(sizes):
        path = folder / f"{i}.bin"
        with open(path, "wb") as out:
            out.truncate(size)  # sparse: cheap to make at any size
        files.append((str(path), f"run/artifacts/{'name-' * 12}{i}.bin"))
    return files


def test_batches_keep_under_the_servers_limits(tmp_path):
    end = artifact_batch.END_ROOM
    room = artifact_batch.room_in_tar("run/artifacts/" + "name-" * 12 + "0.bin", 0)
    largest = MAX_BATCH_BYTES - end - room  # fills a tar to the limit with its headers
    files = sized(tmp_path, [largest, 1, largest + 1, 10, 20])
    cut, alone = artifact_batch.batches(files)
    assert cut == [[files[0]], [files[1], files[3], files[4]]]
    assert alone == [files[2]]
    # At the limit, but for the end's padding to a whole record (counted as a whole one).
    assert (
        MAX_BATCH_BYTES - tarfile.RECORDSIZE < len(artifact_batch.tar_of(cut[0])) <= MAX_BATCH_BYTES
    )
    with tarfile.open(fileobj=io.BytesIO(artifact_batch.tar_of(cut[1]))) as tar:
        assert tar.getnames() == [path for _, path in cut[1]]  # in order


def test_batches_keep_under_the_servers_file_count(tmp_path):
    files = sized(tmp_path, [1] * (2 * MAX_BATCH_FILES + 1))
    cut, alone = artifact_batch.batches(files)
    assert [len(batch) for batch in cut] == [MAX_BATCH_FILES, MAX_BATCH_FILES, 1]
    assert [file for batch in cut for file in batch] == files and alone == []


def test_the_last_files_ride_at_the_end_of_the_batch(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    run = client.create_run(client.create_experiment("last-batched")).info
    files = folder_of_files(tmp_path / "files", 3)
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "MLmodel").write_text("flavors: {}\n")
    uploads, batches = requests_seen(mlflow_server, (-1, []))
    upload(client, [(run.artifact_uri, str(tmp_path / "files"))],
           last=[(run.artifact_uri, str(tmp_path / "last"))])  # fmt: skip
    expected = (uploads, [*batches, "200"])  # one request for all
    assert requests_seen(mlflow_server, expected) == expected
    back = downloaded(client, run.run_id, [*files, "MLmodel"], tmp_path / "back")
    assert back == {**files, "MLmodel": b"flavors: {}\n"}


def test_the_last_files_go_after_the_rest_to_a_plain_server(plain_server, tmp_path):
    client = MlflowClient(plain_server.url)
    run = client.create_run(client.create_experiment("last-plain")).info
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "small.txt").write_text("small")
    # Large enough to be answered well after a small file sent beside it at the same time.
    (tmp_path / "files" / "large.bin").write_bytes(bytes(30 * 2**20))
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "MLmodel").write_text("flavors: {}\n")
    files = ["small.txt", "large.bin"]
    upload(client, [(run.artifact_uri, str(tmp_path / "files"))],
           last=[(run.artifact_uri, str(tmp_path / "last"))])  # fmt: skip

    def mine():
        return [line for line in plain_server.log_text().splitlines()
                if UPLOAD.search(line) and run.run_id in line]  # fmt: skip

    deadline = time.monotonic() + 5  # uvicorn logs a request as it answers
    while len(mine()) < len(files) + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(mine()) == len(files) + 1
    assert "/MLmodel HTTP" in mine()[-1]  # answered last: sent once the others were stored


def test_a_file_no_batch_can_carry_goes_by_itself_and_links_go_as_files(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.url)
    run = client.create_run(client.create_experiment("unbatchable")).info
    files = folder_of_files(tmp_path / "files", 3)
    long_name = "n" * 120  # over ustar's 100 bytes of name, with no folder to split at
    (tmp_path / "files" / long_name).write_bytes(b"a name ustar cannot hold")
    os.symlink(tmp_path / "files" / "file-1.txt", tmp_path / "files" / "linked.txt")
    os.link(tmp_path / "files" / "file-2.txt", tmp_path / "files" / "hard-linked.txt")
    uploads, batches = requests_seen(mlflow_server, (-1, []))
    upload(client, [(run.artifact_uri, str(tmp_path / "files"))])
    expected = (uploads + 1, [*batches, "200"])  # the long name alone, the rest in one batch
    assert requests_seen(mlflow_server, expected) == expected
    names = [*files, long_name, "linked.txt", "hard-linked.txt"]
    back = downloaded(client, run.run_id, names, tmp_path / "back")
    linked = {"linked.txt": files["file-1.txt"], "hard-linked.txt": files["file-2.txt"]}
    assert back == {**files, long_name: b"a name ustar cannot hold", **linked}


def test_a_folder_that_is_not_there_is_an_error_not_an_empty_upload(mlflow_client, tmp_path):
    run = mlflow_client.create_run(mlflow_client.create_experiment("missing")).info
    with pytest.raises(FileNotFoundError):
        upload(mlflow_client, [(run.artifact_uri, str(tmp_path))],
               last=[(run.artifact_uri, str(tmp_path / "mlmodel"))])  # fmt: skip


@pytest.mark.parametrize("name", ["run/50%41.txt", "run/a#b", "run/.artifact.uploading.x",
                                  "../run/x", "run/tab\there"])  # fmt: skip
def test_a_name_the_server_would_refuse_goes_by_itself(tmp_path, name):
    files = sized(tmp_path, [10, 10])
    cut, alone = artifact_batch.batches([files[0], (files[1][0], name)])
    assert (cut, alone) == ([[files[0]]], [(files[1][0], name)])
