"""Each gradq service of docker-compose.yml, run here as the compose file writes it: its
command, environment and healthcheck, with the compose network's addresses translated to the
local PostgreSQL, Redis and free ports. Catches a command, variable or healthcheck that would
only fail inside the stack."""

import io
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack

import httpx
import numpy as np
import pytest
import redis
from mlflow import MlflowClient

from tests.compose.compose_file import ENV_EXAMPLE, load, read_env_file
from tests.processes import BIN, REPO, start, wait_until
from tests.servers import REDIS_URL, empty_postgres_database, free_port, need

pytestmark = pytest.mark.slow

REDIS_DB = 10  # a db of its own: tests/workers 11, bench/service.py 12, tests/e2e 13, ...
JOB = {
    "experiment": "compose-commands",
    "dataset": {"name": "faces"},
    "model": {"hidden_layers": [], "init": "zeros"},
    "training": {"learning_rate": 0.005, "epochs": 20},
}


class Translation:
    """The compose network's names and the image's paths, as this machine reaches them."""

    def __init__(self, databases: dict[str, str], redis_url: str, ports: dict[int, int], tmp):
        self.databases, self.redis_url, self.ports, self.tmp = databases, redis_url, ports, tmp

    def value(self, text: str) -> str:
        for name, url in self.databases.items():
            if text.startswith("postgresql+") and text.endswith(f"@postgres:5432/{name}"):
                return url
        text = text.replace("redis://redis:6379/0", self.redis_url)
        for inside, here in self.ports.items():
            text = text.replace(f"mlflow:{inside}", f"127.0.0.1:{here}")
            text = text.replace(f"127.0.0.1:{inside}/", f"127.0.0.1:{here}/")
            text = text.replace(f"--port={inside}", f"--port={here}")
        return text.replace("/var/lib/mlflow", str(self.tmp / "mlflow")).replace(
            "0.0.0.0", "127.0.0.1"
        )

    def command(self, command: list[str]) -> list[str]:
        translated = [self.value(part) for part in command]
        for index, part in enumerate(translated[:-1]):
            if part == "--port":
                translated[index + 1] = str(self.ports[int(translated[index + 1])])
        executables = {"python": sys.executable, "gradq": str(BIN / "gradq")}
        return [executables.get(translated[0], translated[0]), *translated[1:]]

    def environment(self, service: dict, name: str) -> dict[str, str]:
        env = {key: self.value(str(value)) for key, value in service.get("environment", {}).items()}
        # The image's ENV: GRADQ_HOME, telemetry off; and a container's hostname.
        home = self.tmp / name
        home.mkdir(exist_ok=True)
        env |= {"GRADQ_HOME": str(home), "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        return env | {"HOSTNAME": socket.gethostname()}


def healthy(service: dict, translate: Translation, env: dict[str, str]) -> bool:
    kind, *test = service["healthcheck"]["test"]
    if kind == "CMD-SHELL":
        command = ["sh", "-c", translate.value(test[0]).replace("python ", f"{sys.executable} ", 1)]
    else:
        command = translate.command(test)
    done = subprocess.run(
        command, cwd=REPO, env={**os.environ, **env}, capture_output=True, timeout=60
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def stack_here(tmp_path_factory):
    need("Redis", "127.0.0.1", 6379)
    tmp = tmp_path_factory.mktemp("compose-here")
    example = read_env_file(ENV_EXAMPLE)
    services = load(example)["services"]
    with ExitStack() as stack:
        databases = {
            "gradq": stack.enter_context(empty_postgres_database("compose_gradq")),
            "mlflow": stack.enter_context(empty_postgres_database("compose_mlflow")),
        }
        redis_url = f"{REDIS_URL}/{REDIS_DB}"
        redis.Redis.from_url(redis_url).flushdb()
        ports = {8000: free_port(), 5000: free_port(), 5555: free_port()}
        translate = Translation(databases, redis_url, ports, tmp)
        processes = {}

        def run(name: str, extra_env: dict | None = None):
            service = services[name]
            env = translate.environment(service, name) | (extra_env or {})
            process = start(translate.command(service["command"]), tmp / f"{name}.log", env)
            stack.callback(process.stop, 10.0)
            processes[name] = process
            return process, env

        migrate, _ = run("migrate")
        assert migrate.popen.wait(120) == 0, migrate.log_text()[-3000:]
        for name in ("mlflow", "api", "worker"):
            process, env = run(name)
            wait_until(lambda s=services[name], e=env: healthy(s, translate, e), process, name, 120)
        run("reconciler")
        yield services, translate, example, processes


def api_client(translate: Translation, example: dict[str, str]) -> httpx.Client:
    token = example["GRADQ_API_TOKENS"].split(",")[0]
    return httpx.Client(
        base_url=f"http://127.0.0.1:{translate.ports[8000]}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def train(api: httpx.Client, spec: dict) -> dict:
    """Submit ``spec`` and return the job once it has ended."""
    submitted = api.post("/v1/jobs", json=spec)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    job = {}
    for _ in range(600):
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    return job


def test_each_service_comes_up_healthy_here_and_trains_a_job(stack_here):
    _services, translate, example, processes = stack_here
    api = api_client(translate, example)
    assert api.get("/readyz").status_code == 200, api.get("/readyz").text
    job = train(api, JOB)
    assert job["status"] == "succeeded", (job, processes["worker"].log_text()[-3000:])
    run = MlflowClient(f"http://127.0.0.1:{translate.ports[5000]}").get_run(job["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert processes["reconciler"].popen.poll() is None, processes["reconciler"].log_text()


def test_an_upload_trains_on_a_worker_that_shares_no_disk_with_the_api(stack_here):
    """Here each service has a home of its own, as each container has: the worker fetches the
    upload from the MLflow server's served artifacts (GRADQ_DATASET_STORE=mlflow)."""
    _services, translate, example, processes = stack_here
    api = api_client(translate, example)
    rng = np.random.default_rng(0)
    x = rng.random((60, 3, 3))
    content = io.BytesIO()
    np.savez(content, x=x, y=(x.mean(axis=(1, 2)) > 0.5).astype(np.int64))
    files = {"file": ("blobs.npz", content.getvalue(), "application/octet-stream")}
    uploaded = api.post("/v1/datasets", data={"name": "compose-upload"}, files=files)
    assert uploaded.status_code == 201, uploaded.text

    job = train(api, JOB | {"dataset": {"name": "compose-upload"}})

    assert job["status"] == "succeeded", (job, processes["worker"].log_text()[-3000:])
    api_copy = translate.tmp / "api" / "datasets" / "compose-upload" / "data.npz"
    worker_copy = translate.tmp / "worker" / "datasets" / "compose-upload" / "data.npz"
    assert worker_copy.read_bytes() == api_copy.read_bytes()


def test_flower_refuses_to_start_without_basic_auth_and_asks_for_it(stack_here, tmp_path):
    services, translate, _example, _ = stack_here
    flower = services["flower"]
    command = translate.command(flower["command"])
    env = translate.environment(flower, "flower")
    refused = subprocess.run(
        command, cwd=REPO, env={**os.environ, **env, "FLOWER_BASIC_AUTH": ""},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "FLOWER_BASIC_AUTH" in refused.stdout + refused.stderr

    process = start(command, tmp_path / "flower.log", {**env, "FLOWER_BASIC_AUTH": "ops:s3cret"})
    try:
        url = f"http://127.0.0.1:{translate.ports[5555]}/"

        def answers() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 401
            except httpx.HTTPError:
                return False

        wait_until(answers, process, "flower", 60)
        assert httpx.get(url, auth=("ops", "wrong"), timeout=5).status_code == 401
        assert httpx.get(url, auth=("ops", "s3cret"), timeout=5).status_code == 200
    finally:
        process.stop()
