"""The metrics spool against a real MLflow server: steps an earlier attempt logged are never
sent twice, the spool stays bounded while MLflow is down, a discarded buffer sends nothing;
and ``wait_for``, which waits out an unreachable MLflow but not an error it answered."""

import time

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.tracking import MlflowClient

from tests.servers import unique_name
from workers import metrics_spool, mlflow_retry

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture
def run_id(mlflow_client) -> str:
    experiment = mlflow_client.create_experiment(unique_name("spool"))
    return mlflow_client.create_run(experiment).info.run_id


@pytest.fixture
def unreachable_client(monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the default retries for minutes
    return MlflowClient(UNREACHABLE)


def steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_steps_an_earlier_attempt_logged_are_not_sent_again(mlflow_client, run_id):
    buffer = metrics_spool.MetricsBuffer(mlflow_client, run_id, 3600, logged={"cost": 4})
    for epoch in range(8):
        buffer.on_epoch_end(epoch, {"cost": 1.0 / (epoch + 1), "train_accuracy": 0.5})

    buffer.close()

    assert steps(mlflow_client, run_id, "cost") == [5, 6, 7]
    assert steps(mlflow_client, run_id, "train_accuracy") == list(range(8))


def test_a_checkpoints_history_queues_only_the_steps_above_those_logged(mlflow_client, run_id):
    history = {
        "cost": [0.9, 0.8, 0.7, 0.6, 0.5],
        "train_accuracy": [0.1, 0.2, 0.3, 0.4, 0.5],
        "learning_rate": [0.01] * 5,
    }
    logged = {"cost": 2, "train_accuracy": 3}
    new_values = 2 + 1 + 5  # a spool this small drops whatever else gets queued
    buffer = metrics_spool.MetricsBuffer(
        mlflow_client, run_id, 3600, logged=logged, max_values=new_values
    )

    buffer.add_history(history)
    buffer.close()

    assert buffer.dropped == 0
    assert steps(mlflow_client, run_id, "cost") == [3, 4]
    assert steps(mlflow_client, run_id, "train_accuracy") == [4]
    assert steps(mlflow_client, run_id, "learning_rate") == [0, 1, 2, 3, 4]
    assert [m.value for m in mlflow_client.get_metric_history(run_id, "cost")] == [0.6, 0.5]


def test_while_mlflow_is_down_the_spool_keeps_its_bound_and_counts_what_it_drops(
    mlflow_client, run_id, unreachable_client
):
    buffer = metrics_spool.MetricsBuffer(unreachable_client, run_id, 0.02, max_values=1000)
    for epoch in range(600):  # 1200 values: the last 100 epochs do not fit
        buffer.on_epoch_end(epoch, {"cost": 0.5, "train_accuracy": 0.5})
        if epoch % 100 == 0:
            time.sleep(0.03)  # the thread tries, and fails, to send meanwhile
    with pytest.raises(MlflowException):
        buffer.flush()

    assert buffer.dropped == 200
    buffer.client = mlflow_client  # MLflow is back
    buffer.close()

    assert steps(mlflow_client, run_id, "cost") == list(range(500))
    assert steps(mlflow_client, run_id, "train_accuracy") == list(range(500))


def test_a_discarded_buffer_sends_nothing_more(mlflow_client, run_id, unreachable_client):
    buffer = metrics_spool.MetricsBuffer(unreachable_client, run_id, 3600)
    buffer.add(0, {"cost": 0.7})
    with pytest.raises(MlflowException):
        buffer.flush()  # step 0 waits to be sent again
    buffer.client = mlflow_client
    buffer.add(1, {"cost": 0.6})  # step 1 is pending

    buffer.discard()
    buffer._thread.join(timeout=10)  # its last wake-up would send anything left
    buffer.flush()

    assert not buffer._thread.is_alive()
    assert mlflow_client.get_run(run_id).data.metrics == {}


class Flaky:
    """A call that raises ``error`` the first ``failures`` times, then answers 42."""

    def __init__(self, error: Exception, failures: float):
        self.error, self.failures = error, failures
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return 42


def test_wait_for_returns_as_soon_as_an_unavailable_mlflow_answers():
    assert MlflowException("x").get_http_status_code() == 500
    call = Flaky(MlflowException("x"), failures=2)
    started = time.monotonic()

    assert mlflow_retry.wait_for(call, seconds=30, what="test") == 42

    assert call.calls == 3
    assert time.monotonic() - started < 5  # pauses of 0.2 s and 0.4 s, not the 30 s


def test_wait_for_raises_at_once_when_mlflow_answers_not_found():
    missing = MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST)
    assert missing.get_http_status_code() == 404
    call = Flaky(missing, failures=1)

    with pytest.raises(MlflowException, match="no such run"):
        mlflow_retry.wait_for(call, seconds=30, what="test")

    assert call.calls == 1


def test_wait_for_raises_at_once_for_a_run_the_server_does_not_know(mlflow_client):
    calls = []

    def read_missing_run():
        calls.append(time.monotonic())
        return mlflow_client.get_run("0" * 32)

    with pytest.raises(MlflowException) as raised:
        mlflow_retry.wait_for(read_missing_run, seconds=30, what="test")

    assert raised.value.get_http_status_code() == 404
    assert len(calls) == 1


def test_wait_for_gives_up_after_about_its_seconds_while_mlflow_stays_down():
    call = Flaky(MlflowException("x"), failures=float("inf"))
    seconds = 1.5
    started = time.monotonic()

    with pytest.raises(MlflowException, match="x"):
        mlflow_retry.wait_for(call, seconds=seconds, what="test")

    elapsed = time.monotonic() - started
    assert call.calls > 1
    assert seconds / 2 <= elapsed < seconds + 6


def test_wait_for_tries_an_unreachable_tracking_server_again(unreachable_client):
    calls = []

    def read_experiment():
        calls.append(time.monotonic())
        return unreachable_client.get_experiment("0")

    with pytest.raises(MlflowException):
        mlflow_retry.wait_for(read_experiment, seconds=1, what="test")

    assert len(calls) > 1
