"""GRADQ_CHECKPOINT_STORE=mlflow: checkpoints in a real MLflow server's served artifacts, for
workers on hosts that share no disk. The local folder's guarantees hold there: named by their
checksum, the newest two kept, a damaged one skipped for the one before, the history read back
whole from segments whose number grows as the log of the saves, and a run resumed bit for bit."""

import math

import numpy as np
import pytest
import requests

from models import train
from settings import Settings
from tests.servers import free_port
from tests.workers.test_checkpoint_history import checkpoint
from tests.workers.test_checkpoints import (
    SETTINGS,
    CrashAfter,
    Saver,
    WorkerCrashError,
    data,
    network,
)
from workers import mlflow_retry
from workers.checkpoints.artifacts import ROOT, ArtifactCheckpointStore

JOB = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def bounded_mlflow_calls(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


@pytest.fixture
def job(mlflow_server):
    """A job id of this test's own (the server is shared by the package's tests)."""
    job_id = np.random.default_rng().bytes(16).hex()
    yield job_id
    ArtifactCheckpointStore(mlflow_server.url).discard(job_id)


def artifacts_url(server) -> str:
    return f"{server.url}/api/2.0/mlflow-artifacts/artifacts"


def listed(server, folder: str) -> dict[str, int]:
    """File name -> size of what MLflow holds in gradq/checkpoints/``folder``, read with plain
    HTTP (not through the store under test)."""
    response = requests.get(artifacts_url(server), params={"path": f"{ROOT}/{folder}"}, timeout=10)
    response.raise_for_status()
    return {f["path"]: int(f["file_size"]) for f in response.json().get("files", [])}


def put(server, path: str, data: bytes) -> None:
    requests.put(f"{artifacts_url(server)}/{ROOT}/{path}", data=data, timeout=10).raise_for_status()


def get(server, path: str) -> bytes:
    response = requests.get(f"{artifacts_url(server)}/{ROOT}/{path}", timeout=10)
    response.raise_for_status()
    return response.content


class CountingStore(ArtifactCheckpointStore):
    """The real store, noting the bytes of each file it uploads."""

    def __init__(self, url):
        super().__init__(url)
        self.uploads: list[tuple[str, int]] = []

    def _put(self, path, source):
        self.uploads.append((str(path), source.stat().st_size))
        super()._put(path, source)


def test_the_newest_checkpoint_reads_back_with_every_epochs_history(mlflow_server, job):
    store = ArtifactCheckpointStore(mlflow_server.url)
    for epoch in (100, 250, 400):
        saved = store.save(job, checkpoint(epoch))

    loaded = ArtifactCheckpointStore(mlflow_server.url).load_latest(job)  # another host's

    assert loaded.epoch == 400
    expected = checkpoint(400).history
    assert {k: v.tolist() for k, v in loaded.history.items()} == {
        k: v.tolist() for k, v in expected.items()
    }
    assert saved.uri == f"mlflow-artifacts:/{ROOT}/{job}/{saved.path.name}"
    assert saved.path.name.endswith(f"-{saved.sha256}.npz")


def test_only_the_newest_two_checkpoints_are_kept(mlflow_server, job):
    store = ArtifactCheckpointStore(mlflow_server.url)
    for epoch in (1, 2, 3, 4):
        store.save(job, checkpoint(epoch))

    names = sorted(listed(mlflow_server, job))
    assert [name.split("-")[1] for name in names] == ["000000003", "000000004"]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(mlflow_server, job, damage):
    store = ArtifactCheckpointStore(mlflow_server.url)
    store.save(job, checkpoint(10))
    newest = store.save(job, checkpoint(20))
    data = bytearray(get(mlflow_server, str(newest.path)))
    data = data[: len(data) // 2] if damage == "truncate" else data[:-9] + b"\xff" + data[-8:]
    put(mlflow_server, str(newest.path), bytes(data))

    assert ArtifactCheckpointStore(mlflow_server.url).load_latest(job).epoch == 10


def test_no_checkpoint_loads_as_none(mlflow_server, job):
    put(mlflow_server, f"{job}/epoch-000000001-not-a-checkpoint.npz", b"junk")

    assert ArtifactCheckpointStore(mlflow_server.url).load_latest(job) is None


def test_a_damaged_history_row_skips_the_checkpoints_that_need_it(mlflow_server, job):
    store = ArtifactCheckpointStore(mlflow_server.url)
    store.save(job, checkpoint(30))
    store.save(job, checkpoint(40))  # [0, 30) then [30, 40): the second is not merged
    [(name, size)] = [
        (n, s) for n, s in listed(mlflow_server, f"{job}.history").items() if "-000000030-" in n
    ]
    data = bytearray(get(mlflow_server, f"{job}.history/{name}"))
    data[5 * size // 10] ^= 0xFF  # a row of epoch 35
    put(mlflow_server, f"{job}.history/{name}", bytes(data))

    assert ArtifactCheckpointStore(mlflow_server.url).load_latest(job).epoch == 30


def test_a_save_uploads_the_new_rows_merged_as_a_binary_counter(mlflow_server, job):
    store = CountingStore(mlflow_server.url)
    saves = 64
    for epoch in range(1, saves + 1):
        store.save(job, checkpoint(epoch))

    row = (5 + 1) * 8  # five metrics and a CRC
    history_bytes = [size for path, size in store.uploads if ".history/" in path]
    segments = listed(mlflow_server, f"{job}.history")
    # Save i of one epoch each uploads one segment: the lowest set bit of i in rows (the new
    # row and the segments it merges). Over 2^k saves: 2^k (k/2 + 1) rows, not 2^k (2^k + 1) / 2.
    levels = int(math.log2(saves))
    assert sum(history_bytes) == saves * (levels // 2 + 1) * row
    assert len(segments) == 1 and sum(segments.values()) == saves * row
    store.save(job, checkpoint(saves + 1))
    assert len(listed(mlflow_server, f"{job}.history")) == 2
    assert ArtifactCheckpointStore(mlflow_server.url).load_latest(job).epoch == saves + 1


def test_the_checkpoint_file_does_not_grow_with_the_epochs(mlflow_server, job):
    store = CountingStore(mlflow_server.url)
    store.save(job, checkpoint(10))
    store.save(job, checkpoint(10_000))

    small, big = [size for path, size in store.uploads if path.endswith(".npz")]
    assert abs(big - small) <= 64


def test_a_worker_that_lost_the_job_writes_files_of_its_own(mlflow_server, job):
    first, second = (ArtifactCheckpointStore(mlflow_server.url) for _ in range(2))
    first.save(job, checkpoint(20))
    resumed = second.load_latest(job)
    second.save(job, checkpoint(30, seed=0), prune=False)
    first.save(job, checkpoint(25, seed=9), prune=False)  # not knowing it lost the job

    assert resumed.epoch == 20
    newest = ArtifactCheckpointStore(mlflow_server.url).load_latest(job)
    assert newest.epoch == 30
    np.testing.assert_array_equal(newest.history["cost"], checkpoint(30).history["cost"])


def test_pruning_removes_the_history_of_tokens_no_kept_checkpoint_names(mlflow_server, job):
    first, second = (ArtifactCheckpointStore(mlflow_server.url) for _ in range(2))
    first.save(job, checkpoint(10))
    for epoch in (20, 30):
        second.save(job, checkpoint(epoch))

    tokens = {name.split("-")[0] for name in listed(mlflow_server, f"{job}.history")}
    assert tokens == {second._tokens[job]}
    assert second.load_latest(job).epoch == 30


@pytest.mark.parametrize("what", ["discard", "remove"])
def test_a_jobs_history_goes_with_its_checkpoints(mlflow_server, job, what):
    store = ArtifactCheckpointStore(mlflow_server.url)
    saved = store.save(job, checkpoint(10))

    if what == "discard":
        store.discard(job)
    else:
        store.remove(saved)

    assert listed(mlflow_server, job) == {} and listed(mlflow_server, f"{job}.history") == {}


def test_a_run_resumed_on_another_host_ends_bit_identical(mlflow_server, job):
    X, Y = data()
    whole = train(network(), X, Y, epochs=12, **SETTINGS)
    with pytest.raises(WorkerCrashError):
        saver = Saver(ArtifactCheckpointStore(mlflow_server.url), job)
        train(network(), X, Y, epochs=12, checkpoint_every=2, callbacks=[saver, CrashAfter(8)],
              **SETTINGS)  # fmt: skip

    checkpoint_read = ArtifactCheckpointStore(mlflow_server.url).load_latest(job)
    resumed = network()
    history = train(resumed, X, Y, epochs=12, resume_from=checkpoint_read, **SETTINGS)

    assert checkpoint_read.epoch == 8
    assert history == whole


def test_an_mlflow_that_cannot_be_reached_is_an_error_worth_waiting_for_not_no_checkpoint():
    store = ArtifactCheckpointStore(f"http://127.0.0.1:{free_port()}")

    with pytest.raises(Exception) as raised:
        store.load_latest(JOB)
    assert mlflow_retry.unreachable(raised.value)


def test_a_job_id_that_is_not_lowercase_hex_is_refused(mlflow_server):
    with pytest.raises(ValueError, match="not a job id"):
        ArtifactCheckpointStore(mlflow_server.url).load_latest("../" + JOB)


@pytest.mark.parametrize("variable", ["GRADQ_CHECKPOINT_STORE", "GRADQ_DATASET_STORE"])
def test_the_mlflow_stores_need_a_tracking_server(monkeypatch, tmp_path, variable):
    monkeypatch.setenv(variable, "mlflow")
    monkeypatch.setenv("GRADQ_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")

    with pytest.raises(ValueError, match=f"{variable}=mlflow needs an http"):
        Settings()
