"""The embedded stack of `make up`: the MLflow server, the API, one worker and the reconciler,
as child processes on local files under the home folder, stopped together.

The commands here are the ones docker-compose's services run too (with `python` for
sys.executable), so both stacks start the same way; tests/compose/test_compose_file.py keeps
them in step.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time

import httpx

from settings import MLFLOW_TELEMETRY_OFF, Settings, get_settings
from store.migrate import upgrade

STARTUP_SECONDS = 90
STOP_SECONDS = 15
# MLflow's job runner (a dozen huey processes) serves features gradq does not use and costs
# seconds at start and memory all along. Telemetry is off in every child, the UI included.
MLFLOW_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **MLFLOW_TELEMETRY_OFF}


def tracking_server_command(
    backend_store_uri: str, artifacts: str, host: str, port: int
) -> list[str]:
    # One uvicorn worker: with several, every keep-alive answer waits for a delayed ACK
    # (DESIGN.md section 11), and one is plenty for one machine's workers. --app-name gradq:
    # MLflow's app with a tracking store that stores a batch's metrics in one statement
    # (mlflow_server/).
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_store_uri,
        "--serve-artifacts", "--artifacts-destination", artifacts,
        "--host", host, "--port", str(port), "--workers", "1", "--app-name", "gradq",
    ]  # fmt: skip


def mlflow_command(settings: Settings, host: str, port: int) -> list[str]:
    """MLflow on a SQLite store and local artifacts in the home folder."""
    return tracking_server_command(
        f"sqlite:///{(settings.home / 'mlflow.db').resolve()}",
        str((settings.home / "mlartifacts").resolve()),
        host,
        port,
    )


def api_command(host: str, port: int) -> list[str]:
    # A single process, for the same reason as MLflow's --workers 1.
    return [
        sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app",
        "--host", host, "--port", str(port),
    ]  # fmt: skip


def worker_command(concurrency: int = 1) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
        "--pool", "prefork", "--concurrency", str(concurrency), "--loglevel", "INFO",
    ]  # fmt: skip


def reconciler_command() -> list[str]:
    # Celery beat inside a worker of the reconcile queue alone: one process that schedules the
    # passes and runs them, never queued behind a training job. Run exactly one per stack.
    return [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--beat",
        "--queues", "gradq.reconcile", "--pool", "solo", "--loglevel", "INFO",
        "--hostname", "reconciler@%h", "--without-mingle", "--without-gossip",
    ]  # fmt: skip


def run_embedded_stack(host: str = "127.0.0.1", api_port: int = 8000, mlflow_port: int = 5000):
    """Migrate, start everything, wait until it answers, and run until Ctrl-C or a child
    dies; then stop every child. Returns the exit code."""
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sql_url)
    env = {
        **os.environ,
        **MLFLOW_ENV,
        "GRADQ_MLFLOW_TRACKING_URI": os.environ.get(
            "GRADQ_MLFLOW_TRACKING_URI", f"http://{host}:{mlflow_port}"
        ),
    }
    commands = {
        "mlflow": mlflow_command(settings, host, mlflow_port),
        "api": api_command(host, api_port),
        "worker": worker_command(),
        "reconciler": reconciler_command(),
    }
    children = {name: start(command, env) for name, command in commands.items()}
    stop_requested = []
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    try:
        wait_until_up(f"{env['GRADQ_MLFLOW_TRACKING_URI']}/health", children)
        wait_until_up(f"http://{host}:{api_port}/healthz", children)
        print(
            f"gradq is up: API http://{host}:{api_port} (docs /docs), "
            f"MLflow UI {env['GRADQ_MLFLOW_TRACKING_URI']}; Ctrl-C stops everything",
            flush=True,
        )
        while not stop_requested:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with {child.returncode}; stopping", flush=True)
                    return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    except RuntimeError as error:
        print(error, flush=True)
        return 1
    finally:
        stop_all(children.values())


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    # A session of its own: stopping a child stops everything it started (celery's pool).
    return subprocess.Popen(command, env=env, start_new_session=True)


def wait_until_up(url: str, children: dict[str, subprocess.Popen]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        dead = [name for name, child in children.items() if child.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited during startup")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {STARTUP_SECONDS} s")


def stop_all(children) -> None:
    """SIGTERM every child's process group, then SIGKILL what is left after a grace period."""
    for child in children:
        if child.poll() is None:
            _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.wait()


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it already exited
        os.killpg(child.pid, sig)
