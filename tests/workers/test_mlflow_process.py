"""The helper process that sends a training job's metrics and first artifacts, against a real
MLflow server: what it sends is stored, errors come back as the worker's retry logic reads
them, and a helper that died is replaced."""

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import mlflow.artifacts
import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from contract.spec import JobSpec
from models import Network
from settings import Settings
from tests.servers import free_port, unique_name
from workers import mlflow_process, mlflow_retry, tracking
from workers.artifacts import FirstPart, logged_model_for
from workers.mlflow_process import MlflowProcess

ROWS = [("cost", 0.5, 1_700_000_000_000, 0), ("cost", 0.25, 1_700_000_000_001, 1)]


@pytest.fixture
def run_id(mlflow_client) -> str:
    experiment = tracking.experiment_id(mlflow_client, unique_name("helper"))
    return mlflow_client.create_run(experiment).info.run_id


@pytest.fixture
def helper(mlflow_server):
    process = MlflowProcess(mlflow_server.url, timeout_seconds=60).start()
    yield process
    process.close()


def test_metrics_and_a_folder_of_artifacts_sent_by_the_helper_are_stored(
    helper, mlflow_client, run_id, tmp_path
):
    (tmp_path / "model").mkdir()
    (tmp_path / "spec.json").write_text("{}")
    (tmp_path / "model" / "MLmodel").write_text("flavors: {}\n")

    (tmp_path / "more" / "model").mkdir(parents=True)
    (tmp_path / "spec.json").rename(tmp_path / "more" / "model" / "spec.json")
    uri = mlflow_client.get_run(run_id).info.artifact_uri

    helper.log_metrics(run_id, ROWS)
    # One folder at the run's root, another whose subfolder is kept.
    helper.upload([(uri, str(tmp_path / "model")), (uri, str(tmp_path / "more"))])

    history = mlflow_client.get_metric_history(run_id, "cost")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.25)]
    stored = {a.path for a in mlflow_client.list_artifacts(run_id)}
    assert stored == {"MLmodel", "model"}
    assert [a.path for a in mlflow_client.list_artifacts(run_id, "model")] == ["model/spec.json"]
    assert helper._process.pid != os.getpid()  # sent by another process


def test_the_helper_writes_and_uploads_the_files_known_before_training(
    helper, mlflow_client, run_id, tmp_path
):
    spec = JobSpec.model_validate({"experiment": "helper", "dataset": {"name": "digits"}})
    net = Network([64, 16, 10], output="softmax", init="he")
    experiment = mlflow_client.get_run(run_id).info.experiment_id
    model, _ = logged_model_for(mlflow_client, experiment, run_id, "job", {}, resumed=False)
    uri = mlflow_client.get_run(run_id).info.artifact_uri
    part = replace(FirstPart.of(net, spec, tuple("0123456789"), 1437, np.ones(64)),
                   run_id=run_id, run_artifact_uri=uri, model=model)  # fmt: skip
    (tmp_path / "before").mkdir()
    (tmp_path / "before" / "stale.txt").write_text("from an attempt that failed")

    helper.write_first_artifacts(str(tmp_path), part)

    stored = {a.path for a in mlflow_client.list_artifacts(run_id)}
    assert stored == {"spec.json", "network.md"}
    in_model = set(os.listdir(mlflow.artifacts.download_artifacts(
        model.artifact_location, dst_path=str(tmp_path / "model")
    )))  # fmt: skip
    assert "MLmodel" not in in_model and {"pyfunc_model.py", "input_example.json"} <= in_model
    document = mlflow_client.download_artifacts(run_id, "network.md", str(tmp_path / "down"))
    assert "W[1]: (16, 64)" in Path(document).read_text()
    kept = (tmp_path / "mlmodel" / "MLmodel").read_text()  # kept for the end of the run
    assert f"model_id: {model.model_id}" in kept and "signature" in kept
    assert not (tmp_path / "before" / "stale.txt").exists()


def test_an_answer_that_refuses_comes_back_as_mlflows_error_not_to_be_retried(helper):
    with pytest.raises(MlflowException, match="not found") as raised:
        helper.log_metrics("0" * 32, ROWS)

    assert raised.value.get_http_status_code() == 404
    assert not mlflow_retry.unreachable(raised.value)


def test_an_unreachable_server_is_an_error_the_worker_retries():
    helper = MlflowProcess(f"http://127.0.0.1:{free_port()}", timeout_seconds=60)
    try:
        with pytest.raises(ConnectionError) as raised:
            helper.log_metrics("0" * 32, ROWS)
    finally:
        helper.close()

    assert mlflow_retry.unreachable(raised.value)


def test_a_helper_that_died_between_calls_is_replaced_by_the_next(helper, mlflow_client, run_id):
    helper.log_metrics(run_id, ROWS[:1])
    first = helper._process
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)

    helper.log_metrics(run_id, ROWS[1:])

    assert helper._process.pid != first.pid
    assert len(mlflow_client.get_metric_history(run_id, "cost")) == 2


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_helper_that_dies_during_a_call_is_an_error_the_worker_retries(silent_server):
    helper = MlflowProcess(silent_server, timeout_seconds=60).start()
    killer = threading.Timer(2.0, lambda: os.kill(helper._process.pid, signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(ConnectionError) as raised:
            helper.log_metrics("0" * 32, ROWS)
    finally:
        killer.cancel()
        helper.close()

    assert "EOFError" in str(raised.value) or "ConnectionResetError" in str(raised.value)
    assert mlflow_retry.unreachable(raised.value)


def test_calls_are_served_at_once_each_answered_as_it_ends(silent_server, tmp_path):
    helper = MlflowProcess(silent_server, timeout_seconds=60).start()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "weights.npz").write_bytes(b"weights")
    errors = []

    def stuck_call():
        try:
            helper.log_metrics("0" * 32, ROWS)
        except ConnectionError as error:
            errors.append(error)

    stuck = threading.Thread(target=stuck_call, daemon=True)
    try:
        stuck.start()  # its server never answers
        time.sleep(0.5)
        started = time.monotonic()
        # A local store: the helper writes the files itself, not waiting for the call before.
        helper.upload([((tmp_path / "store").as_uri(), str(tmp_path / "files"))])
        assert time.monotonic() - started < 5  # MLflow's request timeout is longer
        assert (tmp_path / "store" / "weights.npz").read_bytes() == b"weights"
        assert stuck.is_alive()  # still waiting for its answer
    finally:
        helper.close()  # the stuck call fails as a lost helper
    stuck.join(10)
    assert "helper lost" in str(errors[0])


def test_a_helper_that_stops_reading_fails_a_call_in_time_not_blocking_it(silent_server):
    helper = MlflowProcess(silent_server, timeout_seconds=2).start()
    os.kill(helper._process.pid, signal.SIGSTOP)  # alive, reading nothing
    rows = [("cost", 0.5, 1_700_000_000_000, step) for step in range(200_000)]  # > the buffer
    started = time.monotonic()
    try:
        with pytest.raises(ConnectionError):
            helper.log_metrics("0" * 32, rows)
    finally:
        helper.close()
    assert time.monotonic() - started < 15


def test_a_call_not_answered_in_time_kills_the_helper(silent_server):
    helper = MlflowProcess(silent_server, timeout_seconds=3).start()
    process = helper._process
    try:
        with pytest.raises(ConnectionError, match="no answer in 3 s") as raised:
            helper.log_metrics("0" * 32, ROWS)
    finally:
        helper.close()

    assert mlflow_retry.unreachable(raised.value)
    assert process.poll() is not None


def test_the_helper_outlives_a_sigterm_to_the_process_group_and_ends_with_its_pipe(helper, run_id):
    helper.log_metrics(run_id, ROWS[:1])  # serving: its signal handlers are set
    process = helper._process
    helper.start()  # already running: the same process
    assert helper._process is process
    os.kill(process.pid, signal.SIGTERM)  # what a stop of the whole group sends it too
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(1)

    helper._socket.shutdown(socket.SHUT_RDWR)  # the worker's end gone (it exited, or was killed)
    assert process.wait(10) == 0


def test_a_worker_has_one_helper_at_a_time(tmp_path, mlflow_server):
    a = Settings(home=tmp_path, mlflow_tracking_uri=mlflow_server.url)
    b = Settings(home=tmp_path / "b", mlflow_tracking_uri=mlflow_server.url)
    other = Settings(home=tmp_path, mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")

    first = mlflow_process.for_settings(a).start()
    assert mlflow_process.for_settings(b) is first  # same URI, same waiting time
    assert first.timeout_seconds == a.mlflow_wait_seconds + 4 * a.mlflow_timeout_seconds
    process = first._process
    assert mlflow_process.for_settings(other) is not first
    assert process.poll() is not None  # the first one's process was stopped
