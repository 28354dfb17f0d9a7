"""One reconciler pass called in-process (no Celery worker) on SQLite and PostgreSQL, against
a real MLflow server: lost workers' jobs requeued or ended, the outbox re-sent, MLflow runs
closed; and the broker backlog it reads, on a real Redis and on the filesystem broker.

``send`` is the reconciler's injected dependency: here a recorder of the job ids it was given.
"""

from datetime import timedelta
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis
from mlflow.tracking import MlflowClient
from sqlalchemy import update

import store.jobs
from models.serialization import Checkpoint
from settings import Settings
from store import recovery
from store.db import transaction
from store.tables import Job, utcnow
from tests.servers import REDIS_URL, need, unique_name
from tests.workers.helpers import FACES_LOGREG, create_job, get_job, with_experiment
from workers import tasks
from workers.celery_app import make_app
from workers.checkpoints.local import CheckpointStore
from workers.reconciler import Pass, reconcile

OWNER = "lost@host/1"
REDIS_DB = 11  # a database of these tests' own: FLUSHDB touches no one else's keys
DUMMY_TASK = "gradq.test.nothing"  # sent, never run: only the queue length matters


class Recorder:
    """The ``send`` of a pass: remembers every job id it was asked to send."""

    def __init__(self):
        self.sent: list[str] = []

    def __call__(self, job_id: str) -> None:
        self.sent.append(job_id)


def one_pass(factory, settings, mlflow, backlog=lambda: None) -> tuple[Pass, list[str]]:
    send = Recorder()
    done = reconcile(factory, settings, send, mlflow, backlog)
    return done, send.sent


@pytest.fixture
def experiment_id(mlflow_client) -> str:
    return mlflow_client.create_experiment(unique_name("reconciler"))


def new_run(mlflow_client, experiment_id: str) -> str:
    """A RUNNING MLflow run, as a worker leaves it when it dies."""
    return mlflow_client.create_run(experiment_id).info.run_id


def set_columns(factory, job_id: str, **values) -> None:
    with transaction(factory) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def expire_lease(factory, job_id: str) -> None:
    """The job's worker stopped beating a second ago."""
    set_columns(factory, job_id, lease_expires_at=utcnow() - timedelta(seconds=1))


def claim(factory, job_id: str, owner: str = OWNER) -> None:
    with transaction(factory) as session:
        assert store.jobs.claim(session, job_id, owner, lease_seconds=60) is not None


def link_run(factory, job_id: str, experiment_id: str, run_id: str) -> None:
    with transaction(factory) as session:
        store.jobs.set_mlflow_run(session, job_id, experiment_id, run_id)


def queued_job(factory) -> str:
    return create_job(factory, with_experiment(FACES_LOGREG))


def running_job(factory, mlflow_client, experiment_id: str, attempts: int = 1) -> str:
    """A job claimed ``attempts`` times (each earlier worker lost), with an open MLflow run."""
    job_id = queued_job(factory)
    for attempt in range(attempts):
        if attempt:
            expire_lease(factory, job_id)
        claim(factory, job_id, f"worker-{attempt}@host/1")
    link_run(factory, job_id, experiment_id, new_run(mlflow_client, experiment_id))
    return job_id


def finished_job(
    factory, mlflow_client, experiment_id: str, status: str, *, cancel=False, **finish
) -> str:
    """A job its worker ended, with the run left RUNNING (``mlflow_closed=True``: the worker
    says it closed the run itself)."""
    job_id = running_job(factory, mlflow_client, experiment_id)
    owner = get_job(factory, job_id).lease_owner
    if cancel:
        with transaction(factory) as session:
            store.jobs.request_cancel(session, job_id)
    with transaction(factory) as session:
        assert store.jobs.finish(session, job_id, owner, status, **finish)
    return job_id


def run_status(mlflow_client, factory, job_id: str) -> str:
    """The status of the MLflow run of job ``job_id``."""
    return mlflow_client.get_run(get_job(factory, job_id).mlflow_run_id).info.status


def save_checkpoint(settings, job_id: str):
    checkpoints = CheckpointStore(settings.checkpoints_folder)
    checkpoints.save(job_id, Checkpoint(epoch=1, params={"W1": np.zeros((1, 2))}))
    folder = settings.checkpoints_folder / job_id
    assert any(folder.iterdir())
    return folder


# lost workers


def test_a_lost_workers_job_with_attempts_left_is_queued_sent_once_and_its_run_scheduled(
    session_factory, settings, mlflow_client, experiment_id
):
    job_id = running_job(session_factory, mlflow_client, experiment_id)
    expire_lease(session_factory, job_id)

    done, sent = one_pass(session_factory, settings, mlflow_client)

    assert sent == [job_id]
    assert (done.requeued, done.sent, done.ended, done.runs_closed) == ([job_id], [job_id], [], [])
    job = get_job(session_factory, job_id)
    assert (job.status, job.attempts, job.lease_owner, job.error) == ("queued", 1, None, None)
    assert job.mlflow_closed_at is None
    assert run_status(mlflow_client, session_factory, job_id) == "SCHEDULED"


def test_a_lost_workers_job_out_of_attempts_fails_loses_its_checkpoints_and_fails_its_run(
    session_factory, settings, mlflow_client, experiment_id
):
    job_id = running_job(session_factory, mlflow_client, experiment_id, attempts=3)
    folder = save_checkpoint(settings, job_id)
    expire_lease(session_factory, job_id)

    done, sent = one_pass(session_factory, settings, mlflow_client)

    error = "max attempts (3) exhausted: worker lost"
    assert sent == []
    assert (done.requeued, done.sent, done.ended) == ([], [], [job_id])
    job = get_job(session_factory, job_id)
    assert (job.status, job.attempts, job.error) == ("failed", 3, error)
    assert not folder.exists()
    # the same pass closes the run: no waiting for the next one
    assert done.runs_closed == [job_id]
    assert job.mlflow_closed_at is not None
    run = mlflow_client.get_run(job.mlflow_run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["gradq.error"] == error


def test_a_lost_workers_job_whose_cancel_was_requested_ends_cancelled_and_its_run_killed(
    session_factory, settings, mlflow_client, experiment_id
):
    job_id = running_job(session_factory, mlflow_client, experiment_id)
    folder = save_checkpoint(settings, job_id)
    with transaction(session_factory) as session:
        store.jobs.request_cancel(session, job_id)
    expire_lease(session_factory, job_id)

    done, sent = one_pass(session_factory, settings, mlflow_client)

    assert sent == []
    assert (done.requeued, done.ended, done.runs_closed) == ([], [job_id], [job_id])
    job = get_job(session_factory, job_id)
    assert (job.status, job.error) == ("cancelled", None)
    assert job.mlflow_closed_at is not None
    assert not folder.exists()
    run = mlflow_client.get_run(job.mlflow_run_id)
    assert run.info.status == "KILLED"
    assert "gradq.error" not in run.data.tags


# MLflow runs left open


def test_finished_jobs_open_runs_get_their_final_status_and_runs_closed_by_workers_are_skipped(
    session_factory, settings, mlflow_client, experiment_id
):
    succeeded = finished_job(session_factory, mlflow_client, experiment_id, "succeeded")
    failed = finished_job(session_factory, mlflow_client, experiment_id, "failed", error="boom")
    cancelled = finished_job(
        session_factory, mlflow_client, experiment_id, "cancelled", cancel=True
    )
    closed = finished_job(
        session_factory, mlflow_client, experiment_id, "succeeded", mlflow_closed=True
    )
    closed_at = get_job(session_factory, closed).mlflow_closed_at

    done, sent = one_pass(session_factory, settings, mlflow_client)

    assert sorted(done.runs_closed) == sorted([succeeded, failed, cancelled])
    assert (sent, done.requeued, done.ended) == ([], [], [])
    expected = {succeeded: "FINISHED", failed: "FAILED", cancelled: "KILLED", closed: "RUNNING"}
    assert {
        job_id: run_status(mlflow_client, session_factory, job_id) for job_id in expected
    } == expected
    failed_run = mlflow_client.get_run(get_job(session_factory, failed).mlflow_run_id)
    assert failed_run.data.tags["gradq.error"] == "boom"
    for job_id in (succeeded, failed, cancelled):
        assert get_job(session_factory, job_id).mlflow_closed_at is not None
    assert get_job(session_factory, closed).mlflow_closed_at == closed_at

    assert one_pass(session_factory, settings, mlflow_client)[0].runs_closed == []


def test_a_run_mlflow_refuses_to_close_does_not_hold_back_the_other_open_runs(
    session_factory, settings, mlflow_client, experiment_id
):
    deleted = finished_job(session_factory, mlflow_client, experiment_id, "failed", error="boom")
    mlflow_client.delete_run(get_job(session_factory, deleted).mlflow_run_id)  # by a user
    succeeded = finished_job(session_factory, mlflow_client, experiment_id, "succeeded")
    with session_factory() as session:  # the refused run comes first: it finished first
        assert [run.job_id for run in recovery.runs_to_close(session)] == [deleted, succeeded]

    for _ in range(2):
        one_pass(session_factory, settings, mlflow_client)

    assert run_status(mlflow_client, session_factory, succeeded) == "FINISHED"
    assert get_job(session_factory, succeeded).mlflow_closed_at is not None
    assert get_job(session_factory, deleted).mlflow_closed_at is not None  # given up on, once


# the outbox


@pytest.mark.parametrize("waiting", [None, 0, 100], ids=["unknown", "empty", "long"])
def test_a_queued_job_whose_send_failed_is_sent_whatever_the_broker_holds(
    session_factory, settings, mlflow_client, waiting
):
    job_id = queued_job(session_factory)
    with transaction(session_factory) as session:
        store.jobs.mark_undispatched(session, job_id)
    before = utcnow()

    done, sent = one_pass(session_factory, settings, mlflow_client, lambda: waiting)

    assert sent == [job_id]
    assert done.sent == [job_id]
    assert get_job(session_factory, job_id).dispatched_at >= before


def stale_and_fresh_jobs(factory, settings) -> tuple[str, str]:
    """Two queued jobs: one sent longer than redispatch_seconds ago, one just sent."""
    stale, fresh = queued_job(factory), queued_job(factory)
    long_ago = utcnow() - timedelta(seconds=settings.redispatch_seconds + 60)
    set_columns(factory, stale, dispatched_at=long_ago)
    set_columns(factory, fresh, dispatched_at=utcnow())
    return stale, fresh


@pytest.mark.parametrize("waiting", [None, 0, 1], ids=["unknown", "empty", "fewer-than-queued"])
def test_a_stale_queued_job_is_sent_again_when_the_broker_may_have_lost_its_message(
    session_factory, settings, mlflow_client, waiting
):
    stale, fresh = stale_and_fresh_jobs(session_factory, settings)
    before = utcnow()

    done, sent = one_pass(session_factory, settings, mlflow_client, lambda: waiting)

    assert sent == [stale]  # never the fresh one
    assert done.sent == [stale]
    assert get_job(session_factory, stale).dispatched_at >= before
    assert get_job(session_factory, fresh).dispatched_at < before


@pytest.mark.parametrize("waiting", [2, 50], ids=["one-per-queued-job", "more"])
def test_a_stale_queued_job_is_not_sent_again_while_the_broker_holds_enough_messages(
    session_factory, settings, mlflow_client, waiting
):
    stale, _fresh = stale_and_fresh_jobs(session_factory, settings)
    dispatched_at = get_job(session_factory, stale).dispatched_at

    done, sent = one_pass(session_factory, settings, mlflow_client, lambda: waiting)

    assert sent == [] and done.sent == []
    assert get_job(session_factory, stale).dispatched_at == dispatched_at


# MLflow down


def test_with_mlflow_unreachable_a_pass_still_requeues_and_sends_and_a_later_one_closes_runs(
    session_factory, settings, mlflow_client, experiment_id, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the default retries for minutes
    unreachable = MlflowClient("http://127.0.0.1:9")
    requeued = running_job(session_factory, mlflow_client, experiment_id)
    failed = running_job(session_factory, mlflow_client, experiment_id, attempts=3)
    for job_id in (requeued, failed):
        expire_lease(session_factory, job_id)

    done, sent = one_pass(session_factory, settings, unreachable)

    assert sent == [requeued]
    assert (done.requeued, done.ended, done.runs_closed) == ([requeued], [failed], [])
    assert get_job(session_factory, requeued).status == "queued"
    job = get_job(session_factory, failed)
    assert (job.status, job.mlflow_closed_at) == ("failed", None)
    assert run_status(mlflow_client, session_factory, failed) == "RUNNING"

    done, sent = one_pass(session_factory, settings, mlflow_client)

    assert done.runs_closed == [failed] and sent == []
    assert get_job(session_factory, failed).mlflow_closed_at is not None
    run = mlflow_client.get_run(job.mlflow_run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["gradq.error"] == job.error


# training_backlog: the broker's side of the outbox decision


@pytest.fixture
def redis_app(tmp_path, monkeypatch):
    """A Celery app on a Redis database of its own, as workers.tasks.app."""
    server = urlsplit(REDIS_URL)
    need("Redis", server.hostname or "127.0.0.1", server.port or 6379)
    url = f"{REDIS_URL.rstrip('/')}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    app = make_app(Settings(home=tmp_path, broker_url=url))
    monkeypatch.setattr(tasks, "app", app)
    yield app, client
    app.close()
    client.flushdb()
    client.close()


def test_training_backlog_on_redis_counts_waiting_messages_and_is_unknown_without_the_queue(
    redis_app,
):
    app, client = redis_app
    assert tasks.training_backlog() is None  # nothing ever sent: no queue to ask

    for _ in range(3):
        app.send_task(DUMMY_TASK, args=["job"])
    assert tasks.training_backlog() == 3

    client.flushdb()  # a Redis restarted without persistence
    assert tasks.training_backlog() is None


def test_training_backlog_on_the_filesystem_broker_counts_the_message_files(tmp_path, monkeypatch):
    app = make_app(Settings(home=tmp_path, broker_url=""))
    monkeypatch.setattr(tasks, "app", app)
    try:
        assert tasks.training_backlog() == 0

        for _ in range(4):
            app.send_task(DUMMY_TASK, args=["job"])
        assert tasks.training_backlog() == 4
    finally:
        app.close()
