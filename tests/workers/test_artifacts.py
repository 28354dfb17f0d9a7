"""A run's artifacts after training (workers/artifacts.py RunArtifacts.finish), on a real MLflow
server: the plot is drawn while the first part is still on its way, a call that failed can be made
again, and a first part that failed during training is sent again before the model is completed."""

import threading
import time
from pathlib import Path

import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.entities import LoggedModelStatus

from contract.spec import JobSpec
from models import Network, load_weights
from tests.workers.helpers import artifact_paths
from workers import tracking
from workers.artifacts import FirstPart, RunArtifacts, Sender

CLASSES = ("non-face", "face")
HISTORY = {"cost": [0.69, 0.5, 0.4], "train_accuracy": [0.5, 0.7, 0.8]}


def test_a_finish_that_failed_uploading_the_plot_succeeds_when_called_again(
    mlflow_client, tmp_path
):
    spec = JobSpec.model_validate({"experiment": "artifacts", "dataset": {"name": "faces"}})
    run = tracking.start_run(mlflow_client, experiment="artifacts", run_name="r", tags={})
    net = Network([625, 1], output="sigmoid", init="random", seed=3)
    calls = []

    class AwayOnce(Sender):
        def upload(self, folders, last=()):
            plots = [Path(folder) for _, folder in folders if Path(folder).name == "plot"]
            if plots:
                calls.extend(p.name for folder in plots for p in folder.iterdir())
                if len(calls) == 1:  # the plot's first upload: MLflow away for a moment
                    raise ConnectionError("MLflow away")
            super().upload(folders, last)

    part = FirstPart.of(net, spec, CLASSES, 10, np.zeros(625))
    uploads = RunArtifacts(mlflow_client, run, part, sender=AwayOnce(mlflow_client))
    try:
        with pytest.raises(ConnectionError):
            uploads.finish(net, HISTORY, "r")
        net.params["W1"] = net.params["W1"] + 1  # trained further: the files are written anew
        uploads.finish(net, HISTORY, "r")
    finally:
        uploads.close()

    assert {"weights.npz", "cost_curve.png", "spec.json"} <= artifact_paths(
        mlflow_client, run.run_id
    )
    assert calls == ["cost_curve.png", "cost_curve.png"]
    logged = mlflow_client.get_logged_model(uploads.model_id())
    assert logged.status == LoggedModelStatus.READY
    outputs = mlflow_client.get_run(run.run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(logged.model_id, 2000)]
    for where in (
        mlflow_client.download_artifacts(run.run_id, "weights.npz", str(tmp_path / "run")),
        mlflow.artifacts.download_artifacts(
            f"{logged.artifact_location}/artifacts/weights.npz", dst_path=str(tmp_path / "model")
        ),
    ):
        assert np.array_equal(load_weights(where)["W1"], net.params["W1"])


def finished(client, sender: type[Sender]) -> tuple[str, RunArtifacts]:
    """A new run's artifacts sent through ``sender`` and finished: the run's id, the artifacts."""
    spec = JobSpec.model_validate({"experiment": "artifacts", "dataset": {"name": "faces"}})
    run = tracking.start_run(client, experiment="artifacts", run_name="r", tags={})
    net = Network([625, 1], output="sigmoid", init="random", seed=3)
    part = FirstPart.of(net, spec, CLASSES, 10, np.zeros(625))
    uploads = RunArtifacts(client, run, part, sender=sender(client))
    try:
        uploads.finish(net, HISTORY, "r")
    finally:
        uploads.close()
    return run.run_id, uploads


def test_a_first_part_that_failed_is_sent_again_before_the_model_is_completed(mlflow_client):
    sent = []

    class AwayAtFirst(Sender):
        def write_first_artifacts(self, folder, part):
            sent.append(folder)
            if len(sent) == 1:  # MLflow away while the network trained
                raise ConnectionError("MLflow away")
            super().write_first_artifacts(folder, part)

    run_id, uploads = finished(mlflow_client, AwayAtFirst)

    assert len(sent) == 2
    assert {"spec.json", "network.md", "weights.npz", "cost_curve.png"} <= artifact_paths(
        mlflow_client, run_id
    )
    logged = mlflow_client.get_logged_model(uploads.model_id())
    assert logged.status == LoggedModelStatus.READY
    model = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
    assert model.predict(np.zeros((2, 625), dtype=np.float32)).shape[0] == 2


def test_the_plot_is_drawn_while_the_first_part_is_still_being_sent(mlflow_client):
    seen = []

    class SlowFirstPart(Sender):
        def write_first_artifacts(self, folder, part):
            plot = Path(folder) / "plot" / "cost_curve.png"
            waited = time.monotonic() + 30
            while not plot.exists() and time.monotonic() < waited:  # a short job's end
                time.sleep(0.01)
            seen.append(plot.exists())
            super().write_first_artifacts(folder, part)

    run_id, _ = finished(mlflow_client, SlowFirstPart)

    assert seen == [True]
    assert {"spec.json", "weights.npz", "cost_curve.png"} <= artifact_paths(mlflow_client, run_id)


def test_a_resumed_run_sends_its_model_to_the_earlier_attempts_logged_model(mlflow_client):
    spec = JobSpec.model_validate({"experiment": "artifacts", "dataset": {"name": "faces"}})
    run = tracking.start_run(mlflow_client, experiment="artifacts", run_name="r", tags={})
    net = Network([625, 1], output="sigmoid", init="random", seed=3)
    part = FirstPart.of(net, spec, CLASSES, 10, np.zeros(625))
    ids = []
    for resumed in (False, True):
        uploads = RunArtifacts(mlflow_client, run, part, resumed=resumed)
        try:
            uploads.finish(net, HISTORY, "r")
            ids.append(uploads.model_id())
        finally:
            uploads.close()

    assert ids[0] == ids[1]
    found = mlflow_client.search_logged_models([run.experiment_id])
    assert [m.model_id for m in found if m.source_run_id == run.run_id] == ids[:1]
    outputs = mlflow_client.get_run(run.run_id).outputs.model_outputs
    assert [o.model_id for o in outputs] == ids[:1]  # linked once


def test_a_model_discarded_while_its_last_files_wait_is_deleted_not_completed(mlflow_client):
    spec = JobSpec.model_validate({"experiment": "artifacts", "dataset": {"name": "faces"}})
    run = tracking.start_run(mlflow_client, experiment="artifacts", run_name="r", tags={})
    net = Network([625, 1], output="sigmoid", init="random", seed=3)
    first_part_may_go, sent = threading.Event(), []

    class SlowFirstPart(Sender):
        def write_first_artifacts(self, folder, part):
            first_part_may_go.wait(30)  # the first part still being written and sent
            super().write_first_artifacts(folder, part)

        def upload(self, folders, last=()):
            sent.extend(Path(folder).name for _, folder in [*folders, *last])
            if any(Path(folder).name == "plot" for _, folder in folders):
                raise ConnectionError("MLflow away")
            super().upload(folders, last)

    part = FirstPart.of(net, spec, CLASSES, 10, np.zeros(625))
    uploads = RunArtifacts(mlflow_client, run, part, sender=SlowFirstPart(mlflow_client))
    with pytest.raises(ConnectionError):
        uploads.finish(net, HISTORY, "r")  # the model's last files wait behind the first part
    uploads.close(discard_model=True)  # the job failed
    assert uploads._folder.is_dir()  # the first part is still being written into it
    first_part_may_go.set()

    waited = time.monotonic() + 60
    while uploads._folder.exists() and time.monotonic() < waited:
        time.sleep(0.05)
    assert not uploads._folder.exists()  # removed once the thread was done with it
    assert sent == ["plot"]  # neither weights.npz nor MLmodel sent
    models = mlflow_client.search_logged_models([run.experiment_id])
    assert run.run_id not in {m.source_run_id for m in models}
