"""The MLflow adapter against a real server: buffered metrics, batching limits, experiments."""

import math
import time

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import store.jobs
from settings import Settings
from store.db import make_engine, make_session_factory, transaction
from store.tables import Job
from tests.servers import unique_name
from tests.workers.helpers import FACES_LOGREG, create_job, with_experiment
from workers import metrics_spool, mlflow_retry, tracking
from workers.heartbeat import Heartbeat


@pytest.fixture
def run_id(mlflow_client) -> str:
    experiment = tracking.experiment_id(mlflow_client, unique_name("tracking"))
    return mlflow_client.create_run(experiment).info.run_id


@pytest.fixture
def log_batch_calls(mlflow_client) -> list[dict[str, int]]:
    """Counts of what each MlflowClient.log_batch call carried; the calls still reach the real
    server."""
    calls = []
    real = mlflow_client.log_batch

    def spy(run_id, metrics=(), params=(), tags=(), **kwargs):
        calls.append({"metrics": len(metrics), "params": len(params), "tags": len(tags)})
        return real(run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    mlflow_client.log_batch = spy
    return calls


@pytest.fixture
def metric_batches(monkeypatch) -> list[int]:
    """How many metrics each of the buffer's log_batch calls (``metrics_spool.log_metrics``)
    carried; the calls still reach the real server."""
    calls = []
    real = metrics_spool.log_metrics

    def spy(client, run_id, rows):
        calls.append(len(rows))
        return real(client, run_id, rows)

    monkeypatch.setattr(metrics_spool, "log_metrics", spy)
    return calls


def steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_epoch_callbacks_batch_their_metrics_and_beat_only_when_due(
    mlflow_client, run_id, metric_batches, sqlite_url, tmp_path
):
    session_factory = make_session_factory(make_engine(sqlite_url))
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    with transaction(session_factory) as session:
        store.jobs.claim(session, job_id, "me", lease_seconds=60)
    settings = Settings(home=tmp_path, progress_seconds=3600)
    epochs = 5000
    heartbeat = Heartbeat(session_factory, job_id, "me", settings).start()  # beats once at start
    buffer = metrics_spool.MetricsBuffer(mlflow_client, run_id, flush_seconds=3600)

    # The per-epoch cost (<= 0.1 ms) is measured by bench/, not asserted here: timings in unit
    # tests fail on a loaded machine.
    for epoch in range(epochs):
        metrics = {"cost": 1.0 / (epoch + 1), "train_accuracy": 0.5}  # train() makes a new dict
        buffer.on_epoch_end(epoch, metrics)
        heartbeat.on_epoch_end(epoch, metrics)
    buffer.close()
    beats_while_training = heartbeat.beats
    heartbeat.close()

    assert beats_while_training == 1  # epochs only store numbers; the thread was not due
    assert heartbeat.beats == 2  # the last progress, written on close
    with transaction(session_factory) as session:
        job = session.get(Job, job_id)
        assert (job.progress_epoch, job.latest_cost) == (epochs, 1.0 / epochs)
    assert len(metric_batches) == math.ceil(2 * epochs / metrics_spool.MAX_METRICS_PER_BATCH)
    assert max(metric_batches) <= metrics_spool.MAX_METRICS_PER_BATCH
    assert steps(mlflow_client, run_id, "cost") == list(range(epochs))
    assert steps(mlflow_client, run_id, "train_accuracy") == list(range(epochs))


def test_the_background_thread_sends_metrics_while_training_runs(
    mlflow_client, run_id, metric_batches
):
    buffer = metrics_spool.MetricsBuffer(mlflow_client, run_id, flush_seconds=0.1)
    for epoch in range(10):
        buffer.on_epoch_end(epoch, {"cost": 0.5})

    deadline = time.monotonic() + 10
    arrived = []
    while len(arrived) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
        arrived = steps(mlflow_client, run_id, "cost")
    buffer.close()

    assert arrived == list(range(10))  # before close
    assert metric_batches == [10]


def test_metrics_of_a_failed_call_are_sent_again_by_the_next_flush(
    mlflow_client, run_id, monkeypatch
):
    buffer = metrics_spool.MetricsBuffer(mlflow_client, run_id, flush_seconds=3600)
    buffer.add(0, {"cost": 0.7})
    real = metrics_spool.log_metrics
    monkeypatch.setattr(metrics_spool, "log_metrics", _raise_mlflow_outage)
    with pytest.raises(MlflowException):
        buffer.flush()
    monkeypatch.setattr(metrics_spool, "log_metrics", real)
    buffer.add(1, {"cost": 0.6})

    buffer.close()

    assert steps(mlflow_client, run_id, "cost") == [0, 1]


def _raise_mlflow_outage(*args, **kwargs):
    raise MlflowException("tracking server unavailable")


ROWS = [  # key, value, timestamp (ms), step: what the buffer sends
    ("cost", 0.6931471805599453, 1_700_000_000_123, 0),
    ("cost", 1e-300, 1_700_000_000_456, 1),
    ("val_accuracy", math.nan, 1_700_000_000_789, 0),
    ("grad_norm.W1", math.inf, 1_700_000_001_000, 0),
    ("grad_norm.W1", -math.inf, 1_700_000_001_001, 1),
]


def stored(client, run_id: str) -> list[tuple]:
    """Every metric value of the run as MlflowClient reads it back (NaN as a string)."""
    return sorted(
        (m.key, repr(m.value), m.timestamp, m.step)
        for key in ("cost", "val_accuracy", "grad_norm.W1")
        for m in client.get_metric_history(run_id, key)
    )


def test_metrics_sent_as_rest_json_are_stored_as_mlflows_client_stores_them(
    mlflow_client, run_id, log_batch_calls
):
    by_client = tracking.start_run(mlflow_client, experiment="unused", run_name="c", tags={})

    metrics_spool.log_metrics(mlflow_client, run_id, ROWS)
    mlflow_client.log_batch(by_client.run_id, metrics=[Metric(*row) for row in ROWS])

    assert len(log_batch_calls) == 1  # the client's own call only: the buffer's went by REST
    assert stored(mlflow_client, run_id) == stored(mlflow_client, by_client.run_id)
    assert ("cost", repr(1e-300), 1_700_000_000_456, 1) in stored(mlflow_client, run_id)
    assert ("val_accuracy", "nan", 1_700_000_000_789, 0) in stored(mlflow_client, run_id)


def test_an_error_the_server_answers_is_raised_as_mlflows_client_raises_it(mlflow_client):
    with pytest.raises(MlflowException, match="not found") as raised:
        metrics_spool.log_metrics(mlflow_client, "0" * 32, ROWS)

    assert raised.value.get_http_status_code() == 404
    assert not mlflow_retry.unreachable(raised.value)  # an answer: wait_for does not try again


def test_a_local_tracking_store_gets_the_metrics_through_mlflows_client(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("local")).info.run_id

    metrics_spool.log_metrics(client, run_id, ROWS)

    assert [m.value for m in client.get_metric_history(run_id, "cost")] == [
        0.6931471805599453,
        1e-300,
    ]
    assert math.isnan(client.get_metric_history(run_id, "val_accuracy")[0].value)


def test_params_and_tags_beyond_mlflows_batch_limits_go_in_several_calls(
    mlflow_client, run_id, log_batch_calls
):
    params = {f"p{i}": str(i) for i in range(250)}
    tags = {f"t{i}": str(i) for i in range(150)}

    tracking.log_params_and_tags(mlflow_client, run_id, params, tags)

    assert len(log_batch_calls) == 3
    data = mlflow_client.get_run(run_id).data
    assert data.params == params
    assert {k: v for k, v in data.tags.items() if k.startswith("t")} == tags


def test_an_experiment_created_by_a_racing_worker_is_found_not_an_error(mlflow_client):
    name = unique_name("race")
    real = mlflow_client.get_experiment_by_name
    lookups = []

    def racing_lookup(experiment_name):
        lookups.append(experiment_name)
        if len(lookups) == 1:  # another worker creates it right after our lookup
            mlflow_client.create_experiment(experiment_name)
            return None
        return real(experiment_name)

    mlflow_client.get_experiment_by_name = racing_lookup

    found = tracking.experiment_id(mlflow_client, name)

    assert found == real(name).experiment_id
    assert len(lookups) == 2
    assert experiment_kind(mlflow_client, found) == "custom_model_development"


def experiment_kind(client: MlflowClient, experiment_id: str) -> str | None:
    return client.get_experiment(experiment_id).tags.get("mlflow.experimentKind")


def test_a_new_experiment_is_tagged_for_model_development(mlflow_client):
    found = tracking.experiment_id(mlflow_client, unique_name("new"))

    # Untagged, MLflow 3's UI opens it in its GenAI mode, with the runs out of sight.
    assert experiment_kind(mlflow_client, found) == "custom_model_development"


def test_an_existing_untagged_experiment_is_tagged_when_first_used(mlflow_client):
    name = unique_name("older")
    made = mlflow_client.create_experiment(name)  # as gradq made them before the tag
    assert experiment_kind(mlflow_client, made) is None

    found = tracking.experiment_id(mlflow_client, name)

    assert found == made
    assert experiment_kind(mlflow_client, made) == "custom_model_development"


def test_a_run_resumed_in_an_untagged_experiment_tags_it(mlflow_client):
    made = mlflow_client.create_experiment(unique_name("resumed"))  # before the tag
    run_id = mlflow_client.create_run(made).info.run_id

    tracking.start_run(
        mlflow_client, experiment="unused", run_name="r", tags={}, existing_run_id=run_id
    )

    assert experiment_kind(mlflow_client, made) == "custom_model_development"


def test_an_experiment_of_another_kind_keeps_its_kind(mlflow_client):
    name = unique_name("chosen")
    made = mlflow_client.create_experiment(
        name, tags={"mlflow.experimentKind": "genai_development"}
    )

    tracking.experiment_id(mlflow_client, name)

    assert experiment_kind(mlflow_client, made) == "genai_development"


def test_a_deleted_experiment_is_an_error_that_says_so(mlflow_client):
    name = unique_name("deleted")
    mlflow_client.delete_experiment(mlflow_client.create_experiment(name))

    with pytest.raises(MlflowException, match="is deleted"):
        tracking.experiment_id(mlflow_client, name)


def test_a_later_attempt_continues_the_run_of_the_first(mlflow_client, run_id):
    mlflow_client.set_terminated(run_id, "FAILED")

    again = tracking.start_run(
        mlflow_client,
        experiment="unused",
        run_name="unused",
        tags={"gradq.attempt": "2"},
        existing_run_id=run_id,
    )

    run = mlflow_client.get_run(run_id)
    assert again.run_id == run_id
    assert run.info.status == "RUNNING"
    assert run.data.tags["gradq.attempt"] == "2"
