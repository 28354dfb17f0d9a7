"""The real docker-compose.yml on a real Docker engine: gradq's image built from the real
Dockerfile, the stack up with two workers, a job driven through the published API port and
checked through the published MLflow port; a worker container killed mid-job; down then up.

Stand-ins for the official base images are built from Debian under their exact names
(tests/compose/engine.py). Slow: `make test-compose`, which CI runs after `make test`."""

import os
import subprocess
import time
import uuid

import httpx
import pytest
from mlflow import MlflowClient

from tests.compose.compose_file import COMPOSE_FILE, ENV_EXAMPLE, read_env_file
from tests.compose.engine import build_standins, ensure_engine
from tests.processes import REPO
from tests.servers import free_port

pytestmark = pytest.mark.slow

UP_SECONDS = 600
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
TERMINAL = ("succeeded", "failed", "cancelled")


class ComposeStack:
    def __init__(self, project: str, env: dict[str, str], api_port: int, mlflow_port: int):
        self.project, self.env = project, env
        token = env["GRADQ_API_TOKENS"].split(",")[0]
        self.api = httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        self.mlflow = MlflowClient(f"http://127.0.0.1:{mlflow_port}")

    def compose(self, *args: str, timeout: float = UP_SECONDS) -> str:
        command = ["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        done = subprocess.run(
            command, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        output = done.stdout[-3000:] + done.stderr[-3000:]
        assert done.returncode == 0, f"docker-compose {' '.join(args)}:\n{output}"
        return done.stdout

    def up(self) -> None:
        self.compose("up", "-d", "--scale", "worker=2")
        deadline = time.monotonic() + UP_SECONDS
        while time.monotonic() < deadline:
            try:
                if self.api.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(2)
        raise AssertionError(f"the API was not ready in {UP_SECONDS} s:\n{self.logs()}")

    def logs(self) -> str:
        return self.compose("logs", "--tail", "60", "--no-color", timeout=60)[-8000:]

    def submit(self, spec: dict) -> str:
        answer = self.api.post("/v1/jobs", json=spec)
        assert answer.status_code == 202, answer.text
        return answer.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.api.get(f"/v1/jobs/{job_id}").raise_for_status().json()

    def wait(self, job_id: str, done=lambda job: job["status"] in TERMINAL, timeout=600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if done(job):
                return job
            time.sleep(1)
        raise AssertionError(f"job {job_id} still {self.job(job_id)}:\n{self.logs()}")

    def worker_containers(self) -> dict[str, str]:
        """Each worker container's hostname (Celery's celery@<hostname>) and its name."""
        names = self.compose("ps", "-q", "worker", timeout=60).split()
        hostnames = {}
        for container in names:
            hostname = subprocess.run(
                ["docker", "inspect", "--format", "{{.Config.Hostname}}", container],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            hostnames[hostname] = container
        return hostnames


@pytest.fixture(scope="module")
def stack():
    ensure_engine()
    build_standins()
    api_port, mlflow_port = free_port(), free_port()
    env = {
        **os.environ,
        **read_env_file(ENV_EXAMPLE),
        "API_PORT": str(api_port),
        "MLFLOW_PORT": str(mlflow_port),
        "GRADQ_MLFLOW_UI_URL": f"http://127.0.0.1:{mlflow_port}",
        "GRADQ_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    stack = ComposeStack(f"gradqtest{uuid.uuid4().hex[:8]}", env, api_port, mlflow_port)
    try:
        stack.compose("build", timeout=1800)
        stack.up()
        yield stack
    finally:
        subprocess.run(
            ["docker-compose", "-p", stack.project, "-f", str(COMPOSE_FILE), "down", "-v",
             "--remove-orphans", "--timeout", "5"],
            cwd=REPO, env=env, capture_output=True, timeout=300,
        )  # fmt: skip


def cost_steps(stack: ComposeStack, run_id: str) -> list[int]:
    return sorted(m.step for m in stack.mlflow.get_metric_history(run_id, "cost"))


def runs_of(stack: ComposeStack, job_id: str) -> list:
    experiment = stack.mlflow.get_experiment_by_name("compose-engine")
    return stack.mlflow.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`gradq.job_id` = '{job_id}'"
    )


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
    [run] = runs_of(stack, job_id)
    assert run.info.status == "FINISHED"
    assert cost_steps(stack, run.info.run_id) == list(range(LONG["training"]["epochs"]))


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
