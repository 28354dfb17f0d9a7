"""register_as: a succeeded job's LoggedModel becomes a version of the name in MLflow's
registry, and the alias champion goes to the name's best version; models:/NAME@champion then
loads (and `mlflow models serve` serves) the model that predicts as the best job's weights do."""

import json
import os
import urllib.request

import mlflow.pyfunc
import numpy as np
import pytest
from pydantic import ValidationError

from contract.spec import JobSpec
from models import Network, load_dataset, load_weights
from tests.processes import BIN, start, wait_until
from tests.servers import free_port, unique_name
from tests.workers.helpers import FACES_LOGREG, create_job, get_job, with_experiment
from workers import registry
from workers.run import run_job

OWNER = "test-worker/1"


def trained(settings, session_factory, name: str, rate: float):
    spec = with_experiment(FACES_LOGREG, register_as=name)
    spec["training"] |= {"learning_rate": rate, "epochs": 60}
    job_id = create_job(session_factory, spec)
    assert run_job(job_id, settings, session_factory, OWNER) == "succeeded"
    return get_job(session_factory, job_id)


def test_the_champion_alias_follows_the_best_version_and_loads_as_its_weights(
    settings, session_factory, mlflow_client, tmp_path
):
    name = unique_name("faces-best")
    jobs = [trained(settings, session_factory, name, rate) for rate in (0.005, 1e-6, 0.02)]

    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    by_job = {v.tags["gradq.job_id"]: v for v in versions}
    assert sorted(by_job) == sorted(job.id for job in jobs)  # one version a job
    accuracies = [job.metrics["val_accuracy"] for job in jobs]
    best = jobs[accuracies.index(max(accuracies))]  # the first of a tie
    champion = mlflow_client.get_model_version_by_alias(name, "champion")
    assert champion.version == by_job[best.id].version
    assert champion.tags["gradq.metric"] == "val_accuracy"
    assert float(champion.tags["gradq.value"]) == max(accuracies)

    # Registering the same job again (a retried attempt) adds no version.
    ranking = registry.job_ranking(best.metrics)
    again = registry.register(
        mlflow_client, name, champion.model_id, best.mlflow_run_id, best.id, ranking
    )
    assert again.version == champion.version
    assert len(mlflow_client.search_model_versions(f"name = '{name}'")) == 3

    dataset = load_dataset("faces")
    rows = np.ascontiguousarray(dataset.X[:, :20].T, dtype=np.float32)
    weights = mlflow_client.download_artifacts(best.mlflow_run_id, "weights.npz", str(tmp_path))
    net = Network([dataset.n_x, 1], output="sigmoid", init="zeros")
    net.params = load_weights(weights)
    expected = net.predict(rows.T)[0].tolist()
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert model.predict(rows)["label"].tolist() == expected
    assert served_labels(name, rows, tmp_path, settings.mlflow_tracking_uri) == expected


def served_labels(name: str, rows: np.ndarray, tmp_path, tracking_uri: str) -> list[int]:
    """What `mlflow models serve` of models:/NAME@champion answers for ``rows``."""
    port = free_port()
    server = start(
        [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}@champion", "-p", str(port),
         "-h", "127.0.0.1", "--env-manager", "local"],
        tmp_path / "serve.log",
        # It runs `uvicorn` by name: the virtualenv's, on PATH.
        {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )  # fmt: skip
    server.url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{server.url}/ping"), server, "mlflow models serve", 120)
        request = urllib.request.Request(
            f"{server.url}/invocations",
            data=json.dumps({"inputs": rows.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        server.stop()
    return [row["label"] for row in predictions]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("name", ["", "with space", "x' or name != '", "-leading", "a" * 101])
def test_a_registered_name_is_letters_digits_dots_dashes_and_underscores(name):
    with pytest.raises(ValidationError, match="register_as"):
        JobSpec.model_validate({"dataset": {"name": "faces"}, "register_as": name})
