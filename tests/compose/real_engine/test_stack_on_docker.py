"""The real docker-compose.yml on a real Docker engine: gradq's image built from the real
Dockerfile, the stack up with two workers, a job driven through the published API port and
checked through the published MLflow port; a worker container killed mid-job; down then up.

Stand-ins for the official base images are built from Debian under their exact names
(tests/compose/engine.py). Slow: `make test-compose`, which CI runs after `make test`."""

import io
import subprocess

import numpy as np
import pytest

from tests.compose.compose_stack import ComposeStack, compose_stack

pytestmark = pytest.mark.slow

LEASE_SECONDS = 15
SHORT = {
    "experiment": "compose-engine",
    "name": "short",
    "dataset": {"name": "faces"},
    "model": {"hidden_layers": [], "init": "zeros"},
    "training": {"learning_rate": 0.005, "epochs": 40},
}
# Long enough to be killed in the middle, on any machine: it checkpoints as it goes.
LONG = {
    "experiment": "compose-engine",
    "name": "long",
    "dataset": {"name": "digits"},
    "model": {"hidden_layers": [64, 32], "hidden_activation": "relu", "output": "softmax"},
    "training": {"learning_rate": 0.05, "epochs": 3000, "checkpoint_every": 100},
}


@pytest.fixture(scope="module")
def stack():
    with compose_stack(workers=2, GRADQ_LEASE_SECONDS=str(LEASE_SECONDS)) as stack:
        yield stack


def cost_steps(stack: ComposeStack, run_id: str) -> list[int]:
    return sorted(m.step for m in stack.mlflow.get_metric_history(run_id, "cost"))


def runs_of(stack: ComposeStack, job_id: str) -> list:
    experiment = stack.mlflow.get_experiment_by_name("compose-engine")
    return stack.mlflow.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`gradq.job_id` = '{job_id}'"
    )


def mounts_of(container: str) -> list[str]:
    """Where volumes and host folders are mounted in ``container``."""
    return subprocess.run(
        ["docker", "inspect", "--format", "{{range .Mounts}}{{.Destination}} {{end}}", container],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip


def test_a_job_runs_end_to_end_through_the_published_ports(stack):
    job = stack.wait(stack.submit(SHORT))
    assert job["status"] == "succeeded", job["error"]
    run = stack.mlflow.get_run(job["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["gradq.job_id"] == job["id"]
    assert cost_steps(stack, run.info.run_id) == list(range(40))
    artifacts = {artifact.path for artifact in stack.mlflow.list_artifacts(run.info.run_id)}
    assert {"weights.npz", "cost_curve.png", "network.md", "spec.json"} <= artifacts
    assert job["mlflow_url"].startswith(stack.env["GRADQ_MLFLOW_UI_URL"])


def test_a_killed_worker_s_job_finishes_on_the_other_with_one_complete_run(stack):
    job_id = stack.submit(LONG)
    running = stack.wait(job_id, lambda job: (job["progress"]["epoch"] or 0) >= 200)
    assert running["status"] == "running"
    owner = stack.mlflow.get_run(running["mlflow_run_id"]).data.tags["gradq.worker"]
    workers = stack.worker_containers()
    victim = next(container for host, container in workers.items() if host in owner)
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)

    job = stack.wait(job_id, timeout=900)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    finished_on = stack.mlflow.get_run(job["mlflow_run_id"]).data.tags["gradq.worker"]
    assert finished_on != owner
    survivor = next(c for host, c in workers.items() if host in finished_on)
    logs = subprocess.run(["docker", "logs", survivor], capture_output=True, text=True)
    log = logs.stdout + logs.stderr
    assert f"job {job_id} resumes at epoch" in log  # from the checkpoint the other one wrote
    # ... through MLflow's served artifacts: no worker container mounts any volume.
    resumed = [e["detail"] for e in job["events"] if "resumed at epoch" in (e["detail"] or "")]
    assert len(resumed) == 1 and int(resumed[0].split()[3]) >= 100, job["events"]
    assert all(mounts_of(container) == [] for container in workers.values())
    [run] = runs_of(stack, job_id)
    assert run.info.status == "FINISHED"
    assert cost_steps(stack, run.info.run_id) == list(range(LONG["training"]["epochs"]))


def test_an_upload_trains_on_a_worker_container_that_mounts_no_volume(stack):
    rng = np.random.default_rng(0)
    x = rng.random((60, 4, 4))
    content = io.BytesIO()
    np.savez(content, x=x, y=(x.mean(axis=(1, 2)) > 0.5).astype(np.int64))
    files = {"file": ("blobs.npz", content.getvalue(), "application/octet-stream")}
    uploaded = stack.api.post("/v1/datasets", data={"name": "engine-upload"}, files=files)
    assert uploaded.status_code == 201, uploaded.text

    spec = {**SHORT, "name": "upload", "dataset": {"name": "engine-upload"}}
    job = stack.wait(stack.submit(spec))

    assert job["status"] == "succeeded", job["error"]
    worker = stack.mlflow.get_run(job["mlflow_run_id"]).data.tags["gradq.worker"]
    container = next(c for host, c in stack.worker_containers().items() if host in worker)
    assert mounts_of(container) == []


def test_down_then_up_keeps_jobs_and_runs(stack):
    job_id = stack.submit({**SHORT, "name": "before-down"})
    before = stack.wait(job_id)
    assert before["status"] == "succeeded", before["error"]
    stack.compose("down", "--timeout", "10")
    stack.up()
    after = stack.job(job_id)
    assert (after["status"], after["mlflow_run_id"]) == ("succeeded", before["mlflow_run_id"])
    assert stack.mlflow.get_run(after["mlflow_run_id"]).info.status == "FINISHED"
    again = stack.wait(stack.submit({**SHORT, "name": "after-up"}))
    assert again["status"] == "succeeded", again["error"]
