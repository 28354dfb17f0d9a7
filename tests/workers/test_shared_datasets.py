"""GRADQ_DATASET_STORE=mlflow: the API copies a checked upload to a real MLflow server's served
artifacts, and a worker on another "host" (an empty data root of its own) fetches it from there,
checks it and trains on it; a tampered copy, or an MLflow that is down at upload, is refused
with a clear reason and leaves nothing behind."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from store import dataset_artifacts
from store.db import transaction
from store.tables import Dataset
from tests.leftovers import left_and_fresh
from tests.servers import free_port
from tests.service.test_datasets import h5_bytes
from tests.workers.helpers import FACES_LOGREG, create_job, get_job, with_experiment
from workers.data import uploaded_dataset_path
from workers.dataset_cache import FETCHING
from workers.run import run_job

OWNER = "test-worker/1"


@pytest.fixture(autouse=True)
def bounded_mlflow_calls(monkeypatch):
    """Set as store/dataset_artifacts.py would, but undone after the test: its setdefault
    would otherwise change the retries of every later test in this process."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


@pytest.fixture
def hosts(settings, tmp_path):
    """(the API's settings, a worker's on another host): same SQL and MLflow, disjoint disks."""
    api = settings.model_copy(update={"home": tmp_path / "api-host", "dataset_store": "mlflow"})
    worker = settings.model_copy(
        update={"home": tmp_path / "worker-host", "dataset_store": "mlflow"}
    )
    return api, worker


def api_client(settings) -> TestClient:
    return TestClient(create_app(settings))


def npz_bytes(seed: int = 0, m: int = 80) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.random((m, 4, 4))
    y = (x.mean(axis=(1, 2)) > 0.5).astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    return buffer.getvalue()


def upload(client: TestClient, name: str, files: dict):
    return client.post("/v1/datasets", data={"name": name}, files=files)


def upload_npz(client: TestClient, name: str):
    return upload(client, name, {"file": ("blobs.npz", npz_bytes(), "application/octet-stream")})


def artifacts_folder(mlflow_server) -> Path:
    """Where start_mlflow_server's --artifacts-destination keeps the served artifacts."""
    return mlflow_server.log.parent / "artifacts"


def train_on(name: str, worker_settings, session_factory) -> tuple[str | None, str]:
    spec = with_experiment(
        FACES_LOGREG, dataset={"name": name}, training={"epochs": 20, "learning_rate": 0.5}
    )
    job_id = create_job(session_factory, spec)
    return run_job(job_id, worker_settings, session_factory, OWNER), job_id


def rows_named(session_factory, name: str) -> int:
    with transaction(session_factory) as session:
        return session.scalar(select(func.count()).select_from(Dataset).filter_by(name=name))


UPLOADS = {
    "npz": {"file": ("blobs.npz", npz_bytes(), "application/octet-stream")},
    "h5 pair": {
        "file": ("train_cats.h5", h5_bytes("train", 40), "application/octet-stream"),
        "test_file": ("test_cats.h5", h5_bytes("test", 10), "application/octet-stream"),
    },
}


@pytest.mark.parametrize("kind", UPLOADS)
def test_a_worker_on_another_host_fetches_an_upload_from_mlflow_and_trains_on_it(
    kind, hosts, session_factory, mlflow_server
):
    api, worker = hosts
    with api_client(api) as client:
        answer = upload(client, "shared", UPLOADS[kind])
    assert answer.status_code == 201, answer.text
    sha256 = answer.json()["sha256"]
    stored = artifacts_folder(mlflow_server) / "gradq/datasets/shared" / sha256
    uploaded = sorted(p.relative_to(api.datasets_folder / "shared") for p in
                      (api.datasets_folder / "shared").rglob("*") if p.is_file())  # fmt: skip
    assert sorted(p.relative_to(stored) for p in stored.rglob("*") if p.is_file()) == uploaded
    assert not worker.datasets_folder.exists()  # nothing shared: the worker's disk is empty

    status, job_id = train_on("shared", worker, session_factory)

    assert status == "succeeded", get_job(session_factory, job_id).error
    job = get_job(session_factory, job_id)
    for relative in uploaded:  # the cache holds the API's files, byte for byte
        fetched = worker.datasets_folder / "shared" / relative
        assert fetched.read_bytes() == (api.datasets_folder / "shared" / relative).read_bytes()
    assert not any((worker.datasets_folder / FETCHING).iterdir())
    if kind == "h5 pair":  # the test file came along: the job scored its test split
        assert 0 <= job.metrics["test_accuracy"] <= 1

    # A second job reads the cached copy: MLflow's copy gone does not matter any more.
    for path in sorted(stored.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    assert train_on("shared", worker, session_factory)[0] == "succeeded"


def test_a_tampered_copy_in_mlflow_fails_the_job_with_the_reason_and_is_deleted(
    hosts, session_factory, mlflow_server
):
    api, worker = hosts
    with api_client(api) as client:
        answer = upload_npz(client, "tampered")
    assert answer.status_code == 201, answer.text
    sha256 = answer.json()["sha256"]
    copy = artifacts_folder(mlflow_server) / "gradq/datasets/tampered" / sha256 / "data.npz"
    copy.write_bytes(npz_bytes(seed=1))  # the same shapes, other examples

    status, job_id = train_on("tampered", worker, session_factory)

    assert status == "failed"
    job = get_job(session_factory, job_id)
    assert job.error.startswith(
        "DatasetError: dataset 'tampered': the copy fetched from MLflow's artifact store has "
        "sha256 "
    )
    assert f"not the {sha256} it was uploaded with; the copy was deleted" in job.error
    assert job.attempts == 1  # failed, not sent back to be retried
    assert not (worker.datasets_folder / "tampered").exists()
    assert not any((worker.datasets_folder / FETCHING).iterdir())


def test_a_dataset_missing_from_mlflow_fails_the_job_naming_the_setting(
    hosts, settings, session_factory
):
    api, worker = hosts
    with api_client(settings.model_copy(update={"home": api.home})) as client:  # store: local
        assert upload_npz(client, "only-local").status_code == 201

    status, job_id = train_on("only-local", worker, session_factory)

    assert status == "failed"
    error = get_job(session_factory, job_id).error
    assert error.startswith(
        "DatasetError: dataset 'only-local': MLflow's artifact store holds no copy of it"
    )
    assert "GRADQ_DATASET_STORE=mlflow" in error


def test_mlflow_down_at_upload_is_a_503_naming_it_and_stores_nothing(hosts, session_factory):
    api, _ = hosts
    down = api.model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}"})
    with api_client(down) as client:
        answer = upload_npz(client, "unstored")

    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    error = answer.json()["error"]
    assert error["code"] == "mlflow_unavailable"
    assert error["message"].startswith(
        "MLflow's artifact store did not take dataset 'unstored': it could not be reached"
    )
    assert down.mlflow_tracking_uri not in error["message"]  # it may hold credentials
    assert rows_named(session_factory, "unstored") == 0
    leftovers = [p for p in down.datasets_folder.rglob("*") if p.name != ".staging"]
    assert leftovers == []


def test_the_local_store_keeps_uploads_off_mlflow_and_workers_on_the_data_root(
    settings, session_factory, mlflow_server
):
    """The default, today's behaviour: MLflow plays no part in an upload, even when it is
    down, and a worker reads the API's data root, fetching nothing."""
    assert settings.dataset_store == "local"
    down = settings.model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}"})
    with api_client(down) as client:
        answer = upload_npz(client, "local-only")
    assert answer.status_code == 201, answer.text
    stored = artifacts_folder(mlflow_server) / "gradq/datasets/local-only"
    assert not stored.exists()

    assert train_on("local-only", settings, session_factory)[0] == "succeeded"
    assert not (settings.datasets_folder / FETCHING).exists()


def test_a_copy_is_named_by_the_dataset_and_its_sha256_without_a_host():
    uri = dataset_artifacts.artifact_uri("cats", "ab" * 32)
    assert uri == f"mlflow-artifacts:/gradq/datasets/cats/{'ab' * 32}"


def test_workers_of_one_host_fetching_a_dataset_at_once_each_read_one_whole_copy(
    hosts, session_factory
):
    api, worker = hosts
    with api_client(api) as client:
        assert upload_npz(client, "crowded").status_code == 201
    barrier = threading.Barrier(4)

    def fetch(_) -> Path:
        barrier.wait()  # all of them find the data root empty
        return uploaded_dataset_path("crowded", worker, session_factory)

    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(fetch, range(4)))

    expected = (api.datasets_folder / "crowded" / "data.npz").read_bytes()
    assert {path.read_bytes() for path in found} == {expected}
    assert sorted(p.name for p in (worker.datasets_folder / "crowded").iterdir()) == ["data.npz"]
    assert not any((worker.datasets_folder / FETCHING).iterdir())


class RefusingHandler(BaseHTTPRequestHandler):
    """A server at the tracking URI that answers every upload 403."""

    def do_PUT(self):
        self.send_error(403)

    def log_message(self, *args):
        pass


def test_an_mlflow_that_refuses_the_upload_is_a_502_with_its_answer_and_stores_nothing(
    hosts, session_factory
):
    api, _ = hosts
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    refusing = api.model_copy(
        update={"mlflow_tracking_uri": f"http://127.0.0.1:{server.server_address[1]}"}
    )
    try:
        with api_client(refusing) as client:
            answer = upload_npz(client, "refused")
    finally:
        server.shutdown()
        server.server_close()

    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["code"] == "mlflow_error"
    assert error["message"] == (
        "MLflow's artifact store did not take dataset 'refused': it answered HTTP 403; "
        "the dataset was not stored, upload it again"
    )
    assert rows_named(session_factory, "refused") == 0
    assert [p for p in refusing.datasets_folder.rglob("*") if p.name != ".staging"] == []


def test_mlflow_down_at_fetch_is_waited_for_then_fails_the_job_naming_it(
    hosts, session_factory, caplog
):
    api, worker = hosts
    with api_client(api) as client:
        assert upload_npz(client, "stranded").status_code == 201
    down = worker.model_copy(
        update={
            "mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}",
            "mlflow_wait_seconds": 1.0,
        }
    )

    status, job_id = train_on("stranded", down, session_factory)

    assert status == "failed"
    assert get_job(session_factory, job_id).error.startswith(
        "DatasetStoreUnreachableError: MLflow's artifact store did not give dataset 'stranded': "
        "it could not be reached"
    )
    assert "fetch dataset 'stranded': MLflow unreachable, trying again" in caplog.text
    assert not (down.datasets_folder / "stranded").exists()
    assert not any((down.datasets_folder / FETCHING).iterdir())


def test_a_fetch_removes_what_killed_fetches_left_but_not_one_under_way(hosts, session_factory):
    api, worker = hosts
    with api_client(api) as client:
        assert upload(client, "leftovers", UPLOADS["npz"]).status_code == 201
    fetching = worker.datasets_folder / FETCHING
    left_and_fresh(fetching, "x.npz")

    status, job_id = train_on("leftovers", worker, session_factory)

    assert status == "succeeded", get_job(session_factory, job_id).error
    assert sorted(p.name for p in fetching.iterdir()) == ["under-way"]
