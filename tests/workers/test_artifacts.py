"""A run's artifacts after training (workers/artifacts.py RunArtifacts.finish), on a real MLflow
server: the weights go up while the plot is drawn, and a call that failed can be made again."""

import numpy as np
import pytest

from contract.spec import JobSpec
from models import Network, load_weights
from tests.workers.helpers import artifact_paths
from workers import tracking
from workers.artifacts import RunArtifacts

CLASSES = ("non-face", "face")
HISTORY = {"cost": [0.69, 0.5, 0.4], "train_accuracy": [0.5, 0.7, 0.8]}


def test_a_finish_that_failed_uploading_the_plot_succeeds_when_called_again(
    mlflow_client, tmp_path
):
    spec = JobSpec.model_validate({"experiment": "artifacts", "dataset": {"name": "faces"}})
    run = tracking.start_run(mlflow_client, experiment="artifacts", run_name="r", tags={})
    net = Network([625, 1], output="sigmoid", init="random", seed=3)
    calls = []

    def upload_file(run_id: str, path: str, artifact_path: str | None) -> None:
        calls.append(path)
        if len(calls) == 1:  # the plot's first upload: MLflow away for a moment
            raise ConnectionError("MLflow away")
        mlflow_client.log_artifact(run_id, path, artifact_path)

    uploads = RunArtifacts(
        mlflow_client, run.run_id, net, spec, CLASSES, 10, upload_file=upload_file
    )
    try:
        with pytest.raises(ConnectionError):
            uploads.finish(net, HISTORY, "r")
        net.params["W1"] = net.params["W1"] + 1  # trained further: the files are written anew
        uploads.finish(net, HISTORY, "r")
    finally:
        uploads.close()

    paths = artifact_paths(mlflow_client, run.run_id)
    assert {"weights.npz", "cost_curve.png", "model/MLmodel", "spec.json"} <= paths
    assert [p.rsplit("/", 1)[-1] for p in calls] == ["cost_curve.png", "cost_curve.png", "MLmodel"]
    for name in ("weights.npz", "model/artifacts/weights.npz"):
        sent = load_weights(mlflow_client.download_artifacts(run.run_id, name, str(tmp_path)))
        assert np.array_equal(sent["W1"], net.params["W1"])
