"""gradq.train through a real Celery worker process, on the filesystem broker and on Redis."""

import signal
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import pytest
from celery import Celery

from settings import Settings
from store.db import make_engine, make_session_factory
from tests.processes import gradq_env, start_celery_worker
from tests.servers import REDIS_URL, need
from tests.workers.helpers import FACES_LOGREG, create_job, get_job, statuses, with_experiment
from workers.orphaned_folders import TEMP_PREFIX

WORKER_SETTINGS = {"progress_seconds": 0.1, "metrics_flush_seconds": 0.5}


def wait_for_status(session_factory, job_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get_job(session_factory, job_id).status == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is {get_job(session_factory, job_id).status}")


def wait_for_event(session_factory, job_id: str, detail: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(detail in (d or "") for _, _, d in statuses(session_factory, job_id)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no event {detail!r} for job {job_id}")


@pytest.fixture
def worker(tmp_path, mlflow_server):
    """Start a worker with some GRADQ_* settings; stopped (its whole group) afterwards."""
    started = []

    def start(args=(), **settings):
        env = gradq_env(
            home=tmp_path / "gradq",
            mlflow_tracking_uri=mlflow_server.url,
            **WORKER_SETTINGS,
            **settings,
        )
        process = start_celery_worker(tmp_path / "worker.log", env, *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(sig=signal.SIGKILL)  # its jobs are over: no shutdown to wait for


def producer(settings: Settings) -> Celery:
    """What the API sends with: a Celery client that knows no tasks, same broker options."""
    client = Celery("test-producer", broker=settings.celery_broker_url, set_as_current=False)
    client.conf.broker_transport_options = settings.broker_transport_options()
    return client


def test_a_worker_on_the_filesystem_broker_runs_a_job_sent_by_name(
    worker, sqlite_url, tmp_path, mlflow_client
):
    settings = Settings(home=tmp_path / "gradq", database_url=sqlite_url)
    session_factory = make_session_factory(make_engine(sqlite_url))
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    process = worker(database_url=sqlite_url)

    producer(settings).send_task("gradq.train", args=[job_id])

    wait_for_status(session_factory, job_id, "succeeded")
    job = get_job(session_factory, job_id)
    assert job.metrics["val_accuracy"] > 0.8
    assert mlflow_client.get_run(job.mlflow_run_id).info.status == "FINISHED"
    assert job.lease_owner is None
    assert "gradq-test-" in statuses(session_factory, job_id)[1][2]  # claimed by that worker
    assert "Traceback" not in process.log_text()


def test_a_worker_on_redis_runs_a_job_and_ignores_a_second_delivery(
    worker, postgres_url, tmp_path, mlflow_client
):
    redis = urlsplit(REDIS_URL)
    need("Redis", redis.hostname or "127.0.0.1", redis.port or 6379)
    queue = f"gradq-test-{uuid.uuid4().hex[:8]}"  # Redis is shared: no one else's messages
    broker_url = f"{REDIS_URL.rstrip('/')}/0"
    settings = Settings(home=tmp_path / "gradq", database_url=postgres_url, broker_url=broker_url)
    session_factory = make_session_factory(make_engine(postgres_url))
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    worker(database_url=postgres_url, broker_url=broker_url, args=("--queues", queue))

    client = producer(settings)
    client.send_task("gradq.train", args=[job_id], queue=queue)
    client.send_task("gradq.train", args=[job_id], queue=queue)  # delivered twice

    wait_for_status(session_factory, job_id, "succeeded")
    wait_for_event(session_factory, job_id, "duplicate delivery ignored")
    job = get_job(session_factory, job_id)
    assert job.attempts == 1
    assert mlflow_client.get_run(job.mlflow_run_id).info.status == "FINISHED"


def test_a_new_pool_child_removes_the_artifacts_folders_dead_workers_left(
    worker, sqlite_url, tmp_path, monkeypatch
):
    temp = tmp_path / "tmp"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = temp / f"{TEMP_PREFIX}{dead.pid}-q1w2e3"  # as a SIGKILLed child leaves it
    (orphan / "before").mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(temp))  # the worker's tempfile.gettempdir()

    process = worker(database_url=sqlite_url)

    # The log line comes just after the removal: wait for both, not only the folder.
    removal_logged = "left by a worker process that died"
    deadline = time.monotonic() + 30
    while (orphan.exists() or removal_logged not in process.log_text()) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not orphan.exists()
    assert removal_logged in process.log_text()
