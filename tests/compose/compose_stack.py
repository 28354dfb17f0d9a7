"""The real docker-compose.yml run by docker-compose on a Docker engine, driven through its
published ports: shared by tests/compose/real_engine and bench/scale.py."""

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from mlflow import MlflowClient

from tests.compose.compose_file import COMPOSE_FILE, ENV_EXAMPLE, read_env_file
from tests.compose.engine import build_standins, ensure_engine
from tests.processes import REPO
from tests.servers import free_port

UP_SECONDS = 600
TERMINAL = ("succeeded", "failed", "cancelled")


class ComposeStack:
    def __init__(
        self, project: str, env: dict[str, str], api_port: int, mlflow_port: int, workers: int
    ):
        self.project, self.env, self.workers = project, env, workers
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
        self.compose("up", "-d", "--scale", f"worker={self.workers}")
        deadline = time.monotonic() + UP_SECONDS
        while not self.ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"the API was not ready in {UP_SECONDS} s:\n{self.logs()}")
            time.sleep(2)

    def ready(self) -> bool:
        try:
            return self.api.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

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


@contextmanager
def compose_stack(workers: int = 2, **settings: str) -> Iterator[ComposeStack]:
    """The stack built and up with ``workers`` workers, on free published ports, with
    .env.example's values and ``settings`` (environment variables); down, volumes removed,
    on exit."""
    ensure_engine()
    build_standins()
    api_port, mlflow_port = free_port(), free_port()
    env = {
        **os.environ,
        **read_env_file(ENV_EXAMPLE),
        "API_PORT": str(api_port),
        "MLFLOW_PORT": str(mlflow_port),
        "GRADQ_MLFLOW_UI_URL": f"http://127.0.0.1:{mlflow_port}",
        **settings,
    }
    stack = ComposeStack(f"gradqtest{uuid.uuid4().hex[:8]}", env, api_port, mlflow_port, workers)
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
