"""run_job called directly (no Celery) on SQLite and PostgreSQL, against a real MLflow server."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow.artifacts
import mlflow.models
import mlflow.pyfunc
import numpy as np
import pytest
import requests
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

import store.jobs
from models import Network, load_dataset, load_weights, train_val_split
from settings import Settings
from store.db import make_engine, make_session_factory, transaction
from store.tables import Dataset, Job
from tests.workers.helpers import (
    DIGITS_MLP,
    FACES_LOGREG,
    LN2,
    artifact_paths,
    create_job,
    get_job,
    statuses,
    with_experiment,
)
from workers import tracking
from workers.run import run_job

OWNER = "test-worker/1"


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def reload_trained_network(client, run_id: str, tmp_path) -> Network:
    """A Network built from the run's network.json and weights.npz, as a user would."""
    [output] = client.get_run(run_id).outputs.model_outputs
    location = client.get_logged_model(output.model_id).artifact_location
    model_dir = mlflow.artifacts.download_artifacts(f"{location}/artifacts", dst_path=str(tmp_path))
    network = json.loads((Path(model_dir) / "network.json").read_text())
    net = Network(
        network["layer_dims"],
        hidden_activation=network["hidden_activation"],
        output=network["output"],
        init="random",
        dtype=network["dtype"],
    )
    assert model_dir
    net.params = load_weights(client.download_artifacts(run_id, "weights.npz", str(tmp_path)))
    return net


@pytest.mark.parametrize(
    ("spec", "network_line"),
    [(FACES_LOGREG, "W[1]: (1, 625)"), (DIGITS_MLP, "W[2]: (10, 32)")],
    ids=["faces-logreg", "digits-mlp"],
)
def test_run_job_trains_records_success_in_sql_and_a_complete_mlflow_run(
    spec, network_line, settings, session_factory, mlflow_client, tmp_path
):
    spec = with_experiment(spec)
    epochs = spec["training"]["epochs"]
    job_id = create_job(session_factory, spec)

    assert run_job(job_id, settings, session_factory, OWNER) == "succeeded"

    job = get_job(session_factory, job_id)
    assert job.status == "succeeded" and job.error is None
    assert [to for _, to, _ in statuses(session_factory, job_id)] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert job.progress_epoch == epochs and job.latest_cost is not None
    assert set(job.metrics) >= {"cost", "train_accuracy", "val_accuracy"}
    assert job.metrics["val_accuracy"] > 0.8

    run = mlflow_client.get_run(job.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == job.mlflow_experiment_id
    assert run.data.params["training.learning_rate"] == str(spec["training"]["learning_rate"])
    assert run.data.params["model.hidden_layers"] == str(spec["model"]["hidden_layers"])
    assert run.data.tags["gradq.job_id"] == job_id
    assert run.data.tags["gradq.attempt"] == "1"
    assert run.data.tags["gradq.worker"] == OWNER
    assert run.data.tags["gradq.dataset"] == spec["dataset"]["name"]
    dataset = load_dataset(spec["dataset"]["name"])
    assert run.data.tags["gradq.dataset_sha256"] == dataset.sha256()
    assert run.data.tags.get("owner") == spec["tags"].get("owner")
    inputs = run.inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == [spec["dataset"]["name"]]
    assert dataset.sha256().startswith(inputs[0].dataset.digest)

    cost = history(mlflow_client, run.info.run_id, "cost")
    assert [step for step, _ in cost] == list(range(epochs))  # once per epoch, no duplicates
    assert len(history(mlflow_client, run.info.run_id, "grad_norm.W1")) == epochs
    ratios = history(mlflow_client, run.info.run_id, "update_ratio.W1")
    assert [step for step, _ in ratios] == list(range(epochs))
    assert all(value > 0 for _, value in ratios[1:])  # the first is NaN for zeros init
    val_accuracy = [value for _, value in history(mlflow_client, run.info.run_id, "val_accuracy")]
    assert len(val_accuracy) == epochs
    curve = [*val_accuracy, job.metrics["val_accuracy"]]  # each epoch's start, then the end
    assert job.metrics["best_val_accuracy"] == max(curve)  # for a sweep's trials table
    assert job.metrics["best_val_accuracy_epoch"] == curve.index(max(curve))
    [(step, check)] = history(mlflow_client, run.info.run_id, "gradient_check")
    assert step == 0 and check < 1e-6
    assert run.data.metrics["final.val_accuracy"] == pytest.approx(job.metrics["val_accuracy"])

    paths = artifact_paths(mlflow_client, run.info.run_id)
    assert {"weights.npz", "cost_curve.png", "spec.json", "network.md"} <= paths
    assert not any(path.startswith("model/") for path in paths)  # the LoggedModel has it
    network_md = (
        mlflow_client.download_artifacts(run.info.run_id, "network.md", str(tmp_path))
        and (tmp_path / "network.md").read_text()
    )
    assert network_line in network_md

    # weights.npz reproduces the reported accuracy on the same seeded split
    net = reload_trained_network(mlflow_client, run.info.run_id, tmp_path)
    _, _, X_val, Y_val = train_val_split(dataset.X, dataset.Y, 0.25, seed=1)
    assert float(np.mean(net.predict(X_val) == Y_val)) == job.metrics["val_accuracy"]

    # the model is the run's LoggedModel, READY, its output at the last step, with the run's
    # params and the final metrics linked to it
    [output] = run.outputs.model_outputs
    logged = mlflow_client.get_logged_model(output.model_id)
    assert (output.step, logged.name, logged.source_run_id) == (epochs, "model", run.info.run_id)
    assert logged.status == LoggedModelStatus.READY
    assert logged.params["training.epochs"] == str(epochs)
    linked = {m.key: m.value for m in logged.metrics}
    assert linked["final.val_accuracy"] == job.metrics["val_accuracy"]
    info = mlflow.models.get_model_info(f"models:/{logged.model_id}")
    assert info.signature.inputs.to_dict() == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": (-1, dataset.n_x)}}
    ]
    assert info.saved_input_example_info is not None
    files = Path(
        mlflow.artifacts.download_artifacts(logged.artifact_location, dst_path=str(tmp_path / "m"))
    )
    # The plain wing travels with it, as the one module it predicts with.
    assert sorted(p.name for p in (files / "code").iterdir()) == ["plain.py"]

    # its weights are the trained ones (uploaded after training, the rest before)
    top = mlflow_client.download_artifacts(run.info.run_id, "weights.npz", str(tmp_path / "a"))
    inside = mlflow.artifacts.download_artifacts(
        f"{logged.artifact_location}/artifacts/weights.npz", dst_path=str(tmp_path / "b")
    )
    assert Path(top).read_bytes() == Path(inside).read_bytes()

    # the pyfunc model predicts the same labels as the network, by its id and by the run's name
    for uri in (f"models:/{logged.model_id}", f"runs:/{run.info.run_id}/model"):
        model = mlflow.pyfunc.load_model(uri)
        predictions = model.predict(np.ascontiguousarray(X_val.T, dtype=np.float32))
        assert list(predictions["label"]) == list(net.predict(X_val)[0])
    labels = net.predict(X_val)[0][:3]
    assert list(predictions["class"])[:3] == [dataset.classes[i] for i in labels]


def test_zero_initialized_logistic_regression_logs_ln2_as_the_first_cost(
    settings, session_factory, mlflow_client
):
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    run_job(job_id, settings, session_factory, OWNER)
    run_id = get_job(session_factory, job_id).mlflow_run_id
    first_step, first_cost = history(mlflow_client, run_id, "cost")[0]
    assert first_step == 0
    assert first_cost == pytest.approx(LN2, abs=1e-6)


def register_npz(settings, session_factory, name: str, **arrays) -> None:
    """Save ``arrays`` as an uploaded dataset's .npz below the data root and register it."""
    folder = settings.datasets_folder / name
    folder.mkdir(parents=True)
    np.savez(folder / f"{name}.npz", **arrays)
    x = arrays["x"]
    with transaction(session_factory) as session:
        session.add(
            Dataset(
                name=name,
                path=f"{name}/{name}.npz",
                kind="npz",
                sha256="0" * 64,
                n_x=int(np.prod(x.shape[1:])),
                m=len(x),
                classes=[str(c) for c in range(int(arrays["y"].max()) + 1)],
                image_shape=list(x.shape[1:]),
                size_bytes=1,
            )
        )


def test_divergence_fails_the_job_naming_the_epoch_and_the_spec_field(
    settings, session_factory, mlflow_client
):
    digits = load_dataset("digits")
    raw_values = np.ascontiguousarray(digits.X.T) * 1e4  # far from scaled to [0, 1]
    register_npz(settings, session_factory, "raw-digits", x=raw_values, y=digits.Y[0])
    spec = with_experiment(
        DIGITS_MLP,
        dataset={"name": "raw-digits"},
        model={"hidden_layers": [64, 64], "hidden_activation": "relu", "output": "softmax"},
        training={"optimizer": "gd", "learning_rate": 100, "epochs": 50, "seed": 1},
    )
    job_id = create_job(session_factory, spec)

    assert run_job(job_id, settings, session_factory, OWNER) == "failed"

    job = get_job(session_factory, job_id)
    assert job.status == "failed"
    assert job.error.startswith("diverged at epoch ")
    assert job.error.endswith("; lower training.learning_rate")
    run = mlflow_client.get_run(job.mlflow_run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["gradq.error"] == job.error
    # model/ may have its code, but without MLmodel it is no model MLflow offers to load
    assert "model/MLmodel" not in artifact_paths(mlflow_client, run.info.run_id)


def run_while_doing_after_first_heartbeat(settings, session_factory, job_id, action):
    """run_job, while another thread waits for the job's first heartbeat and then does
    ``action(session)`` in a transaction of its own; returns run_job's outcome."""

    def act_after_first_heartbeat():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if get_job(session_factory, job_id).progress_epoch:
                with transaction(session_factory) as session:
                    action(session)
                return
            time.sleep(0.01)

    other = threading.Thread(target=act_after_first_heartbeat)
    other.start()
    outcome = run_job(job_id, settings, session_factory, OWNER)
    other.join()
    return outcome


def test_cancel_requested_while_running_stops_training_as_cancelled_and_kills_the_run(
    settings, session_factory, mlflow_client
):
    epochs = 100_000  # ~20 s of training, far more than runs before the cancel lands
    spec = with_experiment(FACES_LOGREG, training={"epochs": epochs, "seed": 1})
    job_id = create_job(session_factory, spec)

    def cancel(session):
        store.jobs.request_cancel(session, job_id)

    outcome = run_while_doing_after_first_heartbeat(settings, session_factory, job_id, cancel)

    assert outcome == "cancelled"
    job = get_job(session_factory, job_id)
    assert job.status == "cancelled"
    assert job.progress_epoch < epochs
    run = mlflow_client.get_run(job.mlflow_run_id)
    assert run.info.status == "KILLED"
    steps = [step for step, _ in history(mlflow_client, run.info.run_id, "cost")]
    assert steps == list(range(len(steps))) and len(steps) >= job.progress_epoch


def test_a_worker_whose_lease_was_taken_stops_and_leaves_job_and_run_to_the_new_owner(
    settings, session_factory, mlflow_client
):
    spec = with_experiment(FACES_LOGREG, training={"epochs": 100_000, "seed": 1})
    job_id = create_job(session_factory, spec)

    def take_the_lease(session):
        session.execute(update(Job).where(Job.id == job_id).values(lease_owner="reclaimer/9"))

    outcome = run_while_doing_after_first_heartbeat(
        settings, session_factory, job_id, take_the_lease
    )

    assert outcome is None
    job = get_job(session_factory, job_id)
    assert (job.status, job.lease_owner, job.finished_at) == ("running", "reclaimer/9", None)
    assert mlflow_client.get_run(job.mlflow_run_id).info.status == "RUNNING"


def test_a_second_delivery_of_a_finished_job_is_a_no_op_with_an_event(
    settings, session_factory, mlflow_client
):
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG, training={"epochs": 5}))
    run_job(job_id, settings, session_factory, OWNER)
    before = get_job(session_factory, job_id)

    assert run_job(job_id, settings, session_factory, "another-worker/2") is None

    after = get_job(session_factory, job_id)
    assert (after.status, after.attempts, after.finished_at, after.mlflow_run_id) == (
        "succeeded",
        before.attempts,
        before.finished_at,
        before.mlflow_run_id,
    )
    last = statuses(session_factory, job_id)[-1]
    assert last[:2] == ("succeeded", "succeeded")
    assert "duplicate delivery ignored" in last[2]
    runs = mlflow_client.search_runs([before.mlflow_experiment_id])
    assert len(runs) == 1


def test_a_run_an_earlier_attempt_created_but_never_recorded_is_continued_not_duplicated(
    settings, session_factory, mlflow_client
):
    spec = with_experiment(FACES_LOGREG, training={"epochs": 5})
    job_id = create_job(session_factory, spec)
    # Attempt 1 creates its run, then loses SQL before recording it (a PostgreSQL restart, or
    # the worker killed in between), and the job goes back to the queue.
    with transaction(session_factory) as session:
        store.jobs.claim(session, job_id, "first/1", lease_seconds=60)
    tags = {"gradq.job_id": job_id, "gradq.attempt": "1"}
    orphan = tracking.start_run(mlflow_client, experiment=spec["experiment"], run_name=job_id,
                                tags=tags)  # fmt: skip
    mlflow_client.set_terminated(orphan.run_id, "FAILED")
    with transaction(session_factory) as session:
        store.jobs.release(session, job_id, "first/1", "worker lost")

    assert run_job(job_id, settings, session_factory, OWNER) == "succeeded"

    job = get_job(session_factory, job_id)
    runs = mlflow_client.search_runs([orphan.experiment_id])
    assert [run.info.run_id for run in runs] == [orphan.run_id]
    assert job.mlflow_run_id == orphan.run_id
    run = mlflow_client.get_run(orphan.run_id)
    assert (run.info.status, run.data.tags["gradq.attempt"]) == ("FINISHED", "2")
    assert [step for step, _ in history(mlflow_client, orphan.run_id, "cost")] == list(range(5))


def test_a_run_made_by_a_call_whose_answer_was_lost_is_not_made_twice(
    settings, session_factory, mlflow_client, monkeypatch
):
    spec = with_experiment(FACES_LOGREG, training={"epochs": 5})
    job_id = create_job(session_factory, spec)
    real = MlflowClient.create_run
    calls = []

    def answer_lost(self, *args, **kwargs):  # MLflow makes the run; its answer never arrives
        calls.append(real(self, *args, **kwargs))
        if len(calls) == 1:
            raise requests.ConnectionError("connection reset by peer")
        return calls[-1]

    monkeypatch.setattr(MlflowClient, "create_run", answer_lost)

    assert run_job(job_id, settings, session_factory, OWNER) == "succeeded"

    runs = mlflow_client.search_runs([calls[0].info.experiment_id])
    assert len(calls) == 1
    assert [run.info.run_id for run in runs] == [calls[0].info.run_id]
    assert get_job(session_factory, job_id).mlflow_run_id == calls[0].info.run_id


def test_a_run_sql_could_not_record_is_ended_failed_not_left_running(
    settings, session_factory, mlflow_client, monkeypatch
):
    spec = with_experiment(FACES_LOGREG, training={"epochs": 5})
    job_id = create_job(session_factory, spec)

    def sql_gone(*args, **kwargs):  # SQL lost right after MLflow made the run
        raise OperationalError("UPDATE jobs", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(store.jobs, "set_mlflow_run", sql_gone)

    assert run_job(job_id, settings, session_factory, OWNER) == "failed"

    job = get_job(session_factory, job_id)
    assert "server closed the connection" in job.error
    experiment = mlflow_client.get_experiment_by_name(spec["experiment"])
    runs = mlflow_client.search_runs([experiment.experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]


def test_a_delivery_while_another_worker_holds_the_lease_is_a_no_op(settings, session_factory):
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    with transaction(session_factory) as session:
        store.jobs.claim(session, job_id, "holder/1", lease_seconds=60)

    assert run_job(job_id, settings, session_factory, OWNER) is None

    job = get_job(session_factory, job_id)
    assert (job.status, job.lease_owner, job.attempts) == ("running", "holder/1", 1)
    assert statuses(session_factory, job_id)[-1][:2] == ("running", "running")


def test_an_uploaded_dataset_is_read_from_the_data_root_and_its_test_split_scored(
    settings, session_factory, mlflow_client
):
    rng = np.random.default_rng(0)
    x = rng.random((120, 4, 4))
    y = (x.mean(axis=(1, 2)) > 0.5).astype(np.int64)
    register_npz(
        settings, session_factory, "blobs", x=x[:100], y=y[:100], x_test=x[100:], y_test=y[100:]
    )
    spec = with_experiment(
        FACES_LOGREG, dataset={"name": "blobs"}, training={"epochs": 50, "learning_rate": 0.5}
    )
    job_id = create_job(session_factory, spec)

    assert run_job(job_id, settings, session_factory, OWNER) == "succeeded"

    job = get_job(session_factory, job_id)
    assert 0 <= job.metrics["test_accuracy"] <= 1
    run = mlflow_client.get_run(job.mlflow_run_id)
    assert run.data.metrics["test_accuracy"] == job.metrics["test_accuracy"]
    assert run.data.tags["gradq.dataset"] == "blobs"


def test_an_unknown_dataset_fails_the_job_with_the_reason_and_ends_its_run_failed(
    settings, session_factory, mlflow_client
):
    spec = with_experiment(FACES_LOGREG, dataset={"name": "no-such-data"})
    job_id = create_job(session_factory, spec)

    assert run_job(job_id, settings, session_factory, OWNER) == "failed"

    job = get_job(session_factory, job_id)
    assert job.error.startswith("DatasetError: unknown dataset 'no-such-data'")
    # The run is made while the data loads: the worker waits for it and ends it, not RUNNING.
    experiment = mlflow_client.get_experiment_by_name(spec["experiment"])
    runs = mlflow_client.search_runs([experiment.experiment_id])
    assert [(run.info.run_id, run.info.status) for run in runs] == [(job.mlflow_run_id, "FAILED")]


def test_a_training_split_of_a_single_class_fails_the_job_with_the_reason(
    settings, session_factory, mlflow_client
):
    # Labels chosen so that the seeded split puts every example of class 0 in validation.
    m, fraction, seed = 12, 0.25, 1
    columns = np.arange(m, dtype=float)[None, :]
    _, _, validation_columns, _ = train_val_split(columns, np.zeros((1, m)), fraction, seed=seed)
    y = np.ones(m, dtype=np.int64)
    y[validation_columns[0].astype(int)] = 0
    x = np.random.default_rng(0).random((m, 4))
    register_npz(settings, session_factory, "lopsided", x=x, y=y)
    spec = with_experiment(
        FACES_LOGREG,
        dataset={"name": "lopsided"},
        training={"epochs": 5, "validation_split": fraction, "seed": seed},
    )
    job_id = create_job(session_factory, spec)

    assert run_job(job_id, settings, session_factory, OWNER) == "failed"

    job = get_job(session_factory, job_id)
    assert job.error.startswith(
        "DatasetError: dataset 'lopsided', its training split (validation_split 0.25): "
        "a single class"
    )


def test_an_unreachable_mlflow_fails_the_job_instead_of_leaving_it_running(
    settings, session_factory, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the default retries for minutes
    unreachable = settings.model_copy(
        update={"mlflow_tracking_uri": "http://127.0.0.1:9", "mlflow_wait_seconds": 0}
    )
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG, training={"epochs": 5}))

    assert run_job(job_id, unreachable, session_factory, OWNER) == "failed"

    job = get_job(session_factory, job_id)
    assert job.status == "failed" and "MlflowException" in job.error


def test_the_logged_model_loads_its_own_copy_of_the_plain_wing_in_a_fresh_python(
    sqlite_url, tmp_path, mlflow_server
):
    settings = Settings(
        home=tmp_path / "gradq", database_url=sqlite_url, mlflow_tracking_uri=mlflow_server.url
    )
    session_factory = make_session_factory(make_engine(sqlite_url))
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG, training={"epochs": 5}))
    run_job(job_id, settings, session_factory, OWNER)
    run_id = get_job(session_factory, job_id).mlflow_run_id
    model_id = MlflowClient(mlflow_server.url).get_run(run_id).outputs.model_outputs[0].model_id
    script = (
        "import sys, numpy, mlflow.pyfunc\n"
        f"model = mlflow.pyfunc.load_model('models:/{model_id}')\n"
        "print(model.predict(numpy.zeros((2, 625), numpy.float32))['class'].tolist())\n"
        "print(sys.modules['plain'].__file__)\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,  # not the repository: `models` is not importable from here by path
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    classes, plain_file = done.stdout.strip().splitlines()[-2:]
    assert classes in ("['non-face', 'non-face']", "['face', 'face']")  # two equal inputs
    assert plain_file.endswith("/code/plain.py")  # the model's copy, not the repository's


def test_a_stored_spec_that_no_longer_validates_fails_the_job_with_the_reason(
    settings, session_factory
):
    with transaction(session_factory) as session:
        job, _ = store.jobs.create_job(
            session,
            spec={"dataset": {"name": "faces"}, "training": {"momentum_beta": 0.9}},
            experiment="gradq",
            name=None,
            dataset="faces",
            epochs=1,
        )

    assert run_job(job.id, settings, session_factory, OWNER) == "failed"

    failed = get_job(session_factory, job.id)
    assert failed.error.startswith("ValidationError: ")
    assert "training.momentum_beta" in failed.error


def test_a_job_trains_on_the_engine_its_spec_names_and_logs_it(
    settings, session_factory, mlflow_client
):
    """The same float64 job on each engine: the run says which, and the curves agree."""
    curves = {}
    for engine in ("fast", "plain"):
        training = {**FACES_LOGREG["training"], "epochs": 40, "dtype": "float64",
                    "engine": engine}  # fmt: skip
        spec = with_experiment(FACES_LOGREG, training=training)
        job_id = create_job(session_factory, spec)

        assert run_job(job_id, settings, session_factory, OWNER) == "succeeded"

        run = mlflow_client.get_run(get_job(session_factory, job_id).mlflow_run_id)
        assert run.data.params["training.engine"] == engine
        curves[engine] = np.array([value for _, value in history(mlflow_client, run.info.run_id,
                                                                 "cost")])  # fmt: skip
    assert len(curves["plain"]) == 40
    np.testing.assert_allclose(curves["fast"], curves["plain"], rtol=1e-10)
