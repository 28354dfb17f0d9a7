"""Metrics are never silently lost: a full buffer waits for an MLflow that answers, slow or
paused, instead of dropping; only an MLflow that does not answer loses values, and then the
job says so (an event, a run tag), whoever closes the run. A run logs every log_every-th epoch
(and its last), and a resumed run sends again the steps an earlier attempt dropped. All
against real MLflow servers; values counted in MLflow afterwards."""

import os
import signal
import threading

import pytest
from mlflow.tracking import MlflowClient

import store.jobs
from store.db import make_engine, make_session_factory, transaction
from tests.faults.servers import RestartableMlflow
from tests.processes import start_mlflow_server
from tests.servers import unique_name
from tests.workers.helpers import (
    FACES_LOGREG,
    create_job,
    get_job,
    quick_settings,
    statuses,
    with_experiment,
)
from workers import metrics_spool, reconciler, run

OWNER = "test-worker/1"
KEYS = [f"metric_{i}" for i in range(10)]


@pytest.fixture
def run_id(mlflow_client) -> str:
    experiment = mlflow_client.create_experiment(unique_name("delivery"))
    return mlflow_client.create_run(experiment).info.run_id


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def values_in_mlflow(client: MlflowClient, run_id: str) -> int:
    keys = client.get_run(run_id).data.metrics
    return sum(len(client.get_metric_history(run_id, key)) for key in keys)


def add_epochs(buffer: metrics_spool.MetricsBuffer, epochs: range) -> None:
    for epoch in epochs:
        buffer.on_epoch_end(epoch, {key: epoch / 7 for key in KEYS})


def test_a_full_buffer_waits_for_an_answering_mlflow_instead_of_dropping(mlflow_client, run_id):
    # 5000 values made as fast as a loop can, into a buffer of 1000 that sends once an hour
    # unless told: the old buffer dropped 4000 of them and said nothing.
    buffer = metrics_spool.MetricsBuffer(mlflow_client, run_id, 3600, max_values=1000)

    add_epochs(buffer, range(500))
    buffer.close()

    assert (buffer.dropped, buffer.undelivered) == (0, 0)
    for key in KEYS:
        assert steps(mlflow_client, run_id, key) == list(range(500))


@pytest.fixture(scope="module")
def pausable_mlflow(tmp_path_factory):
    server = start_mlflow_server(tmp_path_factory.mktemp("pausable-mlflow"))
    yield server
    os.killpg(server.popen.pid, signal.SIGCONT)
    server.stop()


def test_a_paused_mlflow_that_answers_late_gets_every_value(pausable_mlflow):
    client = MlflowClient(pausable_mlflow.url)
    run_id = client.create_run(client.create_experiment(unique_name("paused"))).info.run_id
    buffer = metrics_spool.MetricsBuffer(client, run_id, 0.05, max_values=1000, stall_seconds=30)
    add_epochs(buffer, range(50))

    os.killpg(pausable_mlflow.popen.pid, signal.SIGSTOP)  # requests hang, unanswered
    resume = threading.Timer(2.0, os.killpg, (pausable_mlflow.popen.pid, signal.SIGCONT))
    resume.start()
    add_epochs(buffer, range(50, 400))  # 3500 values: the buffer fills while it is paused
    resume.join()
    buffer.close()

    assert buffer.undelivered == 0
    assert values_in_mlflow(client, run_id) == 4000


def test_a_buffer_whose_mlflow_does_not_answer_drops_past_its_bound_and_counts_them(
    mlflow_client, run_id, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    buffer = metrics_spool.MetricsBuffer(
        MlflowClient("http://127.0.0.1:9"), run_id, 0.02, max_values=1000
    )

    add_epochs(buffer, range(300))  # 3000 values; nothing listens on port 9

    assert buffer.dropped == 2000
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises: not sent
        buffer.close()
    assert buffer.undelivered == 3000


def test_only_multiples_of_log_every_and_the_last_epoch_are_sent(mlflow_client, run_id):
    buffer = metrics_spool.MetricsBuffer(mlflow_client, run_id, 3600, log_every=10, epochs=95)

    buffer.add_history({key: [0.5] * 60 for key in KEYS})  # a resumed run's first 60 epochs
    add_epochs(buffer, range(60, 95))
    buffer.close()

    assert steps(mlflow_client, run_id, "metric_0") == [*range(0, 95, 10), 94]


def test_steps_an_earlier_attempt_dropped_are_sent_by_the_next_and_no_step_twice(
    mlflow_client, run_id
):
    earlier = metrics_spool.MetricsBuffer(mlflow_client, run_id, 3600, log_every=2, epochs=20)
    for epoch in range(20):
        if epoch not in (4, 6, 7):  # dropped while MLflow was away
            earlier.on_epoch_end(epoch, {"cost": 1.0 / (epoch + 1), "final.cost": 0.1})
    earlier.close()

    logged = metrics_spool.logged_steps(mlflow_client, run_id, log_every=2, epochs=20)
    assert logged.missing == {"cost": frozenset({4, 6})}  # 7 was never to be logged
    history = {"cost": [1.0 / (epoch + 1) for epoch in range(20)]}
    later = metrics_spool.MetricsBuffer(
        mlflow_client, run_id, 3600, logged=logged, log_every=2, epochs=20
    )
    later.add_history(history)
    later.on_epoch_end(18, {"cost": 1.0 / 19})  # recomputed after the checkpoint: logged
    later.close()

    assert steps(mlflow_client, run_id, "cost") == [*range(0, 20, 2), 19]


def test_a_job_with_log_every_logs_those_epochs_and_keeps_every_epoch_elsewhere(
    settings, session_factory, mlflow_client
):
    spec = with_experiment(FACES_LOGREG, training={"epochs": 52, "log_every": 7})
    job_id = create_job(session_factory, spec)

    assert run.run_job(job_id, settings, session_factory, OWNER) == "succeeded"

    job = get_job(session_factory, job_id)
    assert job.progress_epoch == 52
    run_data = mlflow_client.get_run(job.mlflow_run_id).data
    assert run_data.params["training.log_every"] == "7"
    assert "gradq.metrics_incomplete" not in run_data.tags
    logged = [0, 7, 14, 21, 28, 35, 42, 49, 51]  # and the last epoch
    assert steps(mlflow_client, job.mlflow_run_id, "cost") == logged
    assert steps(mlflow_client, job.mlflow_run_id, "val_accuracy") == logged


def test_the_reconciler_closing_a_run_later_tags_an_incomplete_curve(
    session_factory, mlflow_client, run_id
):
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    with transaction(session_factory) as session:
        store.jobs.claim(session, job_id, OWNER, lease_seconds=30)
        store.jobs.set_mlflow_run(session, job_id, "0", run_id)
    with transaction(session_factory) as session:
        assert store.jobs.finish(
            session, job_id, OWNER, "succeeded", mlflow_closed=False, metrics_undelivered=7
        )

    closed = reconciler.close_open_runs(session_factory, mlflow_client)

    assert closed == [job_id]
    found = mlflow_client.get_run(run_id)
    assert found.info.status == "FINISHED"
    assert found.data.tags["gradq.metrics_incomplete"] == "7 values not delivered to MLflow"
    assert statuses(session_factory, job_id)[-1] == (
        "succeeded",
        "succeeded",
        "metrics incomplete: 7 values not delivered to MLflow",
    )


class Outage:
    """A training callback that stops ``server`` after epoch ``down`` and starts it again
    after epoch ``up``: MLflow is away for the epochs between."""

    def __init__(self, server: RestartableMlflow, down: int, up: int):
        self.server, self.down, self.up = server, down, up

    def on_epoch_end(self, epoch, metrics) -> None:
        if epoch == self.down:
            self.server.stop()
        elif epoch == self.up:
            self.server.start()


def test_a_job_whose_mlflow_was_away_ends_saying_its_curve_is_incomplete(
    tmp_path_factory, tmp_path, sqlite_url, monkeypatch
):
    server = RestartableMlflow(tmp_path_factory.mktemp("restartable-mlflow"))
    server.start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a send fails at once
    settings = quick_settings(
        tmp_path / "gradq",
        sqlite_url,
        server.url,
        _env_file=None,
        metrics_flush_seconds=0.1,
        lease_seconds=60,
        metrics_spool_max=1000,
        max_metric_values=1000,
        mlflow_wait_seconds=120,
    )
    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    # 6 values an epoch: cost, accuracies, learning rate, grad_norm.W1, update_ratio.W1
    epochs = 3000
    job_id = create_job(factory, with_experiment(FACES_LOGREG, training={"epochs": epochs}))
    real_train = run.train

    def train_through_an_outage(*args, callbacks, **kwargs):
        return real_train(*args, callbacks=[*callbacks, Outage(server, 50, 1500)], **kwargs)

    monkeypatch.setattr(run, "train", train_through_an_outage)
    try:
        assert run.run_job(job_id, settings, factory, OWNER) == "succeeded"

        job = get_job(factory, job_id)
        details = [detail for _, _, detail in statuses(factory, job_id)]
        incomplete = [d for d in details if d and d.startswith("metrics incomplete: ")]
        assert len(incomplete) == 1, details
        undelivered = int(incomplete[0].split()[2])
        assert undelivered > 0
        client = MlflowClient(server.url)
        found = client.get_run(job.mlflow_run_id)
        assert found.data.tags["gradq.metrics_incomplete"] == (
            f"{undelivered} values not delivered to MLflow"
        )
        made = epochs * 6 + 1 + 3  # + gradient_check, final.cost and the final accuracies
        assert values_in_mlflow(client, job.mlflow_run_id) == made - undelivered
    finally:
        engine.dispose()
        server.stop()
