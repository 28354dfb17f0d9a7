"""What real processes read from their environment: API tokens written as the README says
(GRADQ_API_TOKENS=tok1,tok2), and MLflow's telemetry off in every process gradq starts."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.stack import api_command
from settings import MLFLOW_TELEMETRY_OFF
from store.migrate import upgrade
from tests.e2e.test_make_up import children_of, ctrl_c, start_gradq_up, stop_gradq_up
from tests.processes import REPO, gradq_env, start, wait_until
from tests.servers import free_port

pytestmark = pytest.mark.slow

TOKENS = "tok1,tok2"


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def assert_tokens_are_required(api_url: str) -> None:
    with httpx.Client(base_url=api_url, timeout=30) as api:
        assert api.get("/healthz").status_code == 200
        refused = api.get("/v1/jobs")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert api.get("/v1/jobs", headers={"Authorization": "Bearer tok3"}).status_code == 401
        for token in TOKENS.split(","):
            answer = api.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def secured_gradq_up(tmp_path_factory):
    """`gradq up` with GRADQ_API_TOKENS=tok1,tok2 in its environment: (process, API URL)."""
    home = tmp_path_factory.mktemp("secured-up")
    api_port, mlflow_port = free_port(), free_port()
    up = start_gradq_up(home, api_port, mlflow_port, "up.log", GRADQ_API_TOKENS=TOKENS)
    try:
        yield up, f"http://127.0.0.1:{api_port}"
        ctrl_c(up)
    finally:
        stop_gradq_up(up)


def test_gradq_up_with_comma_separated_tokens_in_its_environment_starts_and_requires_one(
    secured_gradq_up,
):
    _up, api_url = secured_gradq_up

    assert_tokens_are_required(api_url)


def test_every_process_gradq_up_starts_has_mlflow_telemetry_off(secured_gradq_up):
    up, _api_url = secured_gradq_up
    children = children_of(up.pid)
    assert len(children) >= 4  # mlflow, the API, the worker, the reconciler

    for pid in children:
        environ = environ_of(pid)
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        for name, value in MLFLOW_TELEMETRY_OFF.items():
            assert environ.get(name) == value, f"{name} in {command}"


def test_uvicorn_with_comma_separated_tokens_in_its_environment_starts_and_requires_one(
    tmp_path,
):
    home = tmp_path / "home"
    home.mkdir()
    upgrade(f"sqlite:///{home / 'gradq.db'}")
    port = free_port()
    env = gradq_env(home=home, database_url="", broker_url="", api_tokens=TOKENS)
    api = start(api_command("127.0.0.1", port), tmp_path / "api.log", env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/healthz"), api, "uvicorn", 60)

        assert_tokens_are_required(url)
    finally:
        api.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# Variables that make MLflow turn telemetry off by itself (it takes them to mean a CI run).
CI_MARKERS = ("CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS")


@pytest.mark.parametrize("module", ["service.app", "workers.celery_app"])
def test_an_api_or_worker_started_by_hand_turns_mlflow_telemetry_off_itself(module):
    """As compose or the docs start them: no telemetry variable in their environment."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in MLFLOW_TELEMETRY_OFF and name not in CI_MARKERS
    }
    probe = (
        f"import {module}, mlflow\n"
        "from mlflow.telemetry import get_telemetry_client\n"
        "from mlflow.telemetry.utils import is_telemetry_disabled\n"
        "print(is_telemetry_disabled(), get_telemetry_client() is None)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
