"""A job from HTTP through Celery to the NumPy core, tracked in MLflow and SQL: real uvicorn,
real `celery worker`, real `mlflow server` processes, started with the very commands `make up`
runs (service/stack.py), on the embedded default (SQLite, filesystem broker) and on Redis +
PostgreSQL."""

import json
import math
import os
import re
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient
from PIL import Image

from models import Network, load_dataset, load_weights, train_val_split
from service.stack import MLFLOW_ENV, api_command, mlflow_command, worker_command
from settings import Settings
from tests.processes import REPO, gradq_env, start, wait_until
from tests.servers import REDIS_URL, free_port, fresh_postgres_database, need

pytestmark = pytest.mark.slow

LOGREG = {
    "experiment": "e2e-faces",
    "name": "logreg",
    "dataset": {"name": "faces"},
    "model": {"hidden_layers": [], "init": "zeros"},
    "training": {"learning_rate": 0.005, "epochs": 300, "checkpoint_every": 100},
}
MLP = {
    "experiment": "e2e-digits",
    "dataset": {"name": "digits"},
    "model": {"hidden_layers": [32], "hidden_activation": "relu", "output": "softmax"},
    "training": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 15, "batch_size": 64},
}
LONG = {**LOGREG, "name": "long", "training": {"epochs": 100_000, "learning_rate": 0.001}}
REDIS_TEST_DB = 13


class Stack:
    def __init__(self, api: str, mlflow: str):
        self.api = httpx.Client(base_url=api, timeout=30)
        self.mlflow = MlflowClient(mlflow)
        self.api_url = api

    def submit(self, spec: dict, key: str | None = None) -> dict:
        headers = {"Idempotency-Key": key} if key else {}
        response = self.api.post("/v1/jobs", json=spec, headers=headers)
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        return self.api.get(f"/v1/jobs/{job_id}").raise_for_status().json()

    def wait(self, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def start_stack(stack: ExitStack, home: Path, settings_env: dict[str, str]) -> Stack:
    api_port, mlflow_port = free_port(), free_port()
    mlflow_url, api_url = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{api_port}"
    env = {**settings_env, **MLFLOW_ENV, **gradq_env(home=home, mlflow_tracking_uri=mlflow_url)}
    settings = Settings(home=home)
    home.mkdir(parents=True, exist_ok=True)
    mlflow = start(mlflow_command(settings, "127.0.0.1", mlflow_port), home / "mlflow.log", env)
    stack.callback(mlflow.stop)
    api = start(api_command("127.0.0.1", api_port), home / "api.log", env)
    stack.callback(api.stop)
    worker = start(worker_command(), home / "worker.log", env)
    stack.callback(worker.stop, 10.0)
    wait_until(lambda: _answers(f"{mlflow_url}/health"), mlflow, "mlflow server", 90)
    wait_until(lambda: _answers(f"{api_url}/healthz"), api, "API", 60)
    wait_until(lambda: "ready." in worker.log_text(), worker, "celery worker", 60)
    return Stack(api_url, mlflow_url)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module", params=["embedded", "redis_postgres"])
def stack(request, tmp_path_factory):
    home = tmp_path_factory.mktemp(request.param)
    with ExitStack() as exit_stack:
        if request.param == "embedded":
            from store.migrate import upgrade

            upgrade(Settings(home=home).sql_url)  # what `gradq up` does first
            env = {}
        else:
            need("Redis", "127.0.0.1", 6379)
            database = exit_stack.enter_context(fresh_postgres_database())
            broker = f"{REDIS_URL}/{REDIS_TEST_DB}"
            import redis

            redis.Redis.from_url(broker).flushdb()
            env = gradq_env(database_url=database, broker_url=broker)
        yield start_stack(exit_stack, home, env)


def downloaded_weights(stack: Stack, run_id: str, folder: Path) -> dict[str, np.ndarray]:
    path = stack.mlflow.download_artifacts(run_id, "weights.npz", str(folder))
    return load_weights(path)


def test_logistic_regression_job_is_tracked_end_to_end(stack, tmp_path):
    job = stack.wait(stack.submit(LOGREG)["id"])
    assert job["status"] == "succeeded", job["error"]
    assert [(e["from_status"], e["to_status"]) for e in job["events"]] == [
        (None, "queued"), ("queued", "running"), ("running", "succeeded"),
    ]  # fmt: skip
    run = stack.mlflow.get_run(job["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["training.learning_rate"] == "0.005"
    cost = sorted(stack.mlflow.get_metric_history(run.info.run_id, "cost"), key=lambda m: m.step)
    assert [m.step for m in cost] == list(range(300))
    assert abs(cost[0].value - math.log(2)) < 1e-6

    ds = load_dataset("faces")
    _, _, X_val, Y_val = train_val_split(ds.X, ds.Y, 0.25, seed=1)
    net = Network([ds.n_x, 1], output="sigmoid")
    net.params = downloaded_weights(stack, run.info.run_id, tmp_path)
    accuracy = float((net.predict(X_val) == Y_val).mean())
    assert accuracy == pytest.approx(job["metrics"]["val_accuracy"], abs=1e-9)

    curve = stack.api.get(f"/v1/jobs/{job['id']}/metrics").raise_for_status().json()
    assert [point["step"] for point in curve["metrics"]["cost"]] == list(range(300))


def test_mlp_job_on_digits_learns_and_its_weights_reproduce_its_accuracy(stack, tmp_path):
    job = stack.wait(stack.submit(MLP)["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["val_accuracy"] > 0.9
    run_id = job["mlflow_run_id"]
    artifacts = {a.path for a in stack.mlflow.list_artifacts(run_id)}
    assert {"weights.npz", "cost_curve.png", "spec.json", "network.md"} <= artifacts
    [output] = stack.mlflow.get_run(run_id).outputs.model_outputs  # the LoggedModel
    assert stack.mlflow.get_logged_model(output.model_id).status == LoggedModelStatus.READY
    steps = [m.step for m in stack.mlflow.get_metric_history(run_id, "cost")]
    assert sorted(steps) == list(range(15))

    ds = load_dataset("digits")
    _, _, X_val, Y_val = train_val_split(ds.X, ds.Y, 0.25, seed=1)
    net = Network([ds.n_x, 32, 10], hidden_activation="relu", output="softmax")
    net.params = downloaded_weights(stack, run_id, tmp_path)
    accuracy = float((net.predict(X_val) == Y_val).mean())
    assert accuracy == pytest.approx(job["metrics"]["val_accuracy"], abs=1e-9)


def test_same_idempotency_key_and_body_make_one_job(stack):
    first = stack.submit(LOGREG, key="e2e-same-key")
    second = stack.submit(LOGREG, key="e2e-same-key")
    assert second["id"] == first["id"]
    assert stack.wait(first["id"])["status"] == "succeeded"


def test_cancel_stops_a_running_job_and_a_queued_one_and_kills_the_run(stack):
    running = stack.submit(LONG)
    queued = stack.submit({**LONG, "name": "behind"})  # one worker, one job at a time
    stack.wait(running["id"], statuses=("running",), timeout=60)
    cancelled_queued = stack.api.post(f"/v1/jobs/{queued['id']}/cancel").json()
    assert cancelled_queued["status"] == "cancelled"
    assert stack.api.post(f"/v1/jobs/{running['id']}/cancel").status_code == 202

    job = stack.wait(running["id"], timeout=60)
    assert job["status"] == "cancelled"
    assert job["progress"]["epoch"] < LONG["training"]["epochs"]
    assert stack.mlflow.get_run(job["mlflow_run_id"]).info.status == "KILLED"
    # The queued job's message still reaches the worker, which must not run it.
    time.sleep(1.0)
    assert stack.job(queued["id"])["status"] == "cancelled"
    assert stack.job(queued["id"])["mlflow_run_id"] is None


def test_cli_submit_watch_follows_a_job_to_success(stack, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(
        '{"experiment": "e2e-cli", "dataset": {"name": "faces"}, "training": {"epochs": 200}}'
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "gradq"), "submit", str(spec), "--watch",
         "--api", stack.api_url],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    assert "MLflow run: http" in done.stdout.replace("\n", "")


def gradq(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "gradq"), *args, "--api", stack.api_url]
    wide = os.environ | {"COLUMNS": "200"}  # rich's tables: no cell cut short
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, env=wide)


def test_cli_uploads_a_dataset_lists_shows_and_cancels_jobs(stack, tmp_path):
    ds = load_dataset("digits")
    picked = ds.Y[0] < 2  # a two-class npz of the digits 0 and 1, pixels in [0, 1]
    np.savez(tmp_path / "zeros_ones.npz", x=ds.X.T[picked], y=ds.Y[0][picked])
    name = f"zeros-ones-{tmp_path.name[-8:]}".replace("_", "-")
    added = gradq(stack, "datasets", "add", str(tmp_path / "zeros_ones.npz"), "--name", name)
    assert added.returncode == 0, added.stdout + added.stderr
    assert '"n_x": 64' in added.stdout

    job = stack.submit({**LONG, "dataset": {"name": name}, "name": "cli-cancel"})
    stack.wait(job["id"], statuses=("running",), timeout=60)
    listed = gradq(stack, "jobs", "--experiment", LONG["experiment"])
    assert listed.returncode == 0 and job["id"][:8] in listed.stdout
    shown = gradq(stack, "show", job["id"])
    assert shown.returncode == 0 and f'"name": "{name}"' in shown.stdout  # in its spec
    cancelled = gradq(stack, "cancel", job["id"])
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert stack.wait(job["id"], timeout=60)["status"] == "cancelled"
    missing = gradq(stack, "show", "no-such-job")
    assert missing.returncode == 1 and "404" in missing.stdout


def test_cli_sweep_watch_follows_a_grid_to_its_best_trial(stack, tmp_path):
    """Two trials of a learning-rate grid, trained by the stack's worker: the live table ends
    naming the best, which the API ranks by val_accuracy, with the epoch of its best value."""
    sweep_file = tmp_path / "sweep.json"
    base = {"experiment": "e2e-sweep", "dataset": {"name": "faces"}, "training": {"epochs": 40}}
    space = {"training.learning_rate": [0.00001, 0.01]}
    sweep_file.write_text(json.dumps({"base": base, "space": space}))

    done = gradq(stack, "sweep", str(sweep_file), "--watch")

    assert done.returncode == 0, done.stdout + done.stderr
    sweep_id = re.search(r"sweep ([0-9a-f]{32}) queued: 2 trials", done.stdout)[1]
    sweep = stack.api.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["status"] == "succeeded" and sweep["counts"]["succeeded"] == 2
    best = max(sweep["trials"], key=lambda trial: trial["objective"])
    assert sweep["best_job"] == best["job_id"]
    assert "best job:" in done.stdout and best["job_id"] in done.stdout.replace("\n", "")
    assert 0 <= best["best_epoch"] <= 40 and best["best_value"] >= best["objective"]
    listed = gradq(stack, "sweeps")
    assert listed.returncode == 0 and sweep_id[:8] in listed.stdout

    png, ids = tmp_path / "curves.png", [trial["job_id"] for trial in sweep["trials"]]
    compared = subprocess.run(
        [str(Path(sys.executable).parent / "gradq"), "compare", *ids, "--step", "10",
         "--plot", str(png), "--api", stack.api_url],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=os.environ | {"COLUMNS": "200"},
    )  # fmt: skip
    assert compared.returncode == 0, compared.stdout + compared.stderr
    header = next(line for line in compared.stdout.splitlines() if "training.learning_rate" in line)
    assert "final val_accuracy" in header and "at 10" in header
    assert all(job_id[:8] in compared.stdout for job_id in ids)
    assert png.read_bytes()[:4] == b"\x89PNG"

    # The trials' runs are children of the sweep's parent run.
    for trial in sweep["trials"]:
        tags = stack.mlflow.get_run(trial["mlflow_run_id"]).data.tags
        assert tags["mlflow.parentRunId"] == sweep["mlflow_run_id"] is not None

    # The best trial classifies an image file as the API does for it.
    face = tmp_path / "face.png"
    pixels = (load_dataset("faces").X[:, 0].reshape(25, 25) * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(face)
    predicted = gradq(stack, "predict", sweep["best_job"], str(face))
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    files = [("images", ("face.png", face.read_bytes()))]
    by_api = stack.api.post(f"/v1/jobs/{sweep['best_job']}/predict", files=files).json()
    row = next(line for line in predicted.stdout.splitlines() if "face.png" in line)
    assert by_api["predicted"][0] in row.split()
    assert f"{max(by_api['probabilities'][0]):.4f}" in row
