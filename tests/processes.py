"""Real server and worker processes for tests: an MLflow tracking server and Celery workers.

Each process runs in its own session (process group), so that stopping it also stops whatever it
forked (uvicorn's and Celery's children). Output goes to a log file whose tail is shown when a
process fails to come up.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from service.stack import MLFLOW_ENV, tracking_server_command
from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Process:
    """A started process, its log file and, for servers, the URL it answers on."""

    popen: subprocess.Popen
    log: Path
    url: str = ""

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        stop_process_group(self.popen, timeout, sig)


def start(command: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    """Start ``command`` in a new session, from the repository root, output into ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(popen, log)


def stop_process_group(
    popen: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM
) -> None:
    """Send ``sig`` to the process (it stops its own children: Celery's pool, uvicorn), then,
    after it exits or ``timeout`` passes, SIGKILL whatever is left of its group.

    A Celery worker took 3-8 s to stop after SIGTERM (warm shutdown) and up to 5 s after
    SIGQUIT once it had run a job; tests whose jobs are over may as well send SIGKILL."""
    if popen.poll() is None:
        popen.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout)
    _kill_group(popen.pid, signal.SIGKILL)  # children may outlive their parent
    popen.wait(timeout)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def wait_until(ready, process: Process, what: str, timeout: float) -> None:
    """Poll ``ready()`` until true; RuntimeError with the log's tail if the process exits or
    ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if process.popen.poll() is not None:
            break
        time.sleep(0.05)
    process.stop()
    raise RuntimeError(f"{what} did not come up; its log ends:\n{process.log_text()[-4000:]}")


# -- MLflow ---------------------------------------------------------------------------------


def start_mlflow_server(
    folder: Path, backend_store_uri: str = "", timeout: float = 60.0, plain: bool = False
):
    """An ``mlflow server`` on a free port with its store and artifacts under ``folder``, by
    make up's command (service/stack.py); ``plain``: without ``--app-name gradq``, MLflow's
    server as it comes.

    --workers 1: uvicorn with several workers never sets TCP_NODELAY, and every keep-alive
    request then waits ~43 ms for a delayed ACK (DESIGN.md section 11).
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    store = backend_store_uri or f"sqlite:///{folder / 'mlflow.db'}"
    command = tracking_server_command(store, str(folder / "artifacts"), "127.0.0.1", port)
    if plain:
        command = command[: command.index("--app-name")]
    process = start(command, folder / "mlflow-server.log", MLFLOW_ENV)  # as make up's
    process.url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _health_ok(process.url), process, "mlflow server", timeout)
    return process


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


# -- Celery ----------------------------------------------------------------------------------


def gradq_env(**settings) -> dict[str, str]:
    """GRADQ_* environment variables from settings keywords: gradq_env(home=p) sets GRADQ_HOME."""
    return {f"GRADQ_{name.upper()}": str(value) for name, value in settings.items()}


def start_celery_worker(
    log: Path,
    env: dict[str, str],
    *extra_args: str,
    concurrency: int = 1,
    timeout: float = 60.0,
) -> Process:
    """``celery -A workers.celery_app worker`` with ``env`` (GRADQ_* settings), ready to take
    tasks when this returns."""
    command = [
        str(BIN / "celery"),
        "-A",
        "workers.celery_app",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--loglevel=info",
        f"--hostname=gradq-test-{os.getpid()}-{time.monotonic_ns()}@%h",
        # Neither is needed by one worker, and mingle waits a second for its peers' replies.
        "--without-mingle",
        "--without-gossip",
        *extra_args,
    ]
    process = start(command, log, env)
    wait_until(lambda: " ready." in process.log_text(), process, "celery worker", timeout)
    return process
