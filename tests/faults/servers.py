"""Private servers for fault injection: Redis, PostgreSQL and MLflow that a test may stop,
kill and start again on the same port, leaving the machine's shared servers alone."""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from service.stack import MLFLOW_ENV, mlflow_command
from settings import Settings
from tests.processes import Process, start, wait_until
from tests.servers import free_port, listening, unavailable


class PrivateRedis:
    """A redis-server that keeps nothing on disk, like the machine's: a restart empties it."""

    def __init__(self, folder: Path):
        if shutil.which("redis-server") is None:
            unavailable("redis-server is not installed")
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
        ]  # fmt: skip
        self.process = start(command, self.folder / "redis.log")
        wait_until(lambda: listening("127.0.0.1", self.port), self.process, "redis", 20)

    def kill(self) -> None:
        self.process.stop(timeout=5, sig=signal.SIGKILL)


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb, pg_ctl) in a temporary folder, trust auth."""

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            unavailable("PostgreSQL's pg_ctl is not installed")
        self.bin = Path(found[-1]).parent
        # The server refuses to run as root: as root, run it as the postgres user, in a folder
        # that user owns (pytest's tmp_path is root's alone).
        self.folder = Path(tempfile.mkdtemp(prefix="gradq-pg-"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "pg.log"),
            "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if listening("127.0.0.1", self.port):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_user, str(self.bin / program), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=60)


class RestartableMlflow:
    """`mlflow server` with make up's own command, on SQLite and local artifacts in
    ``folder``, that can be stopped and started again on the same port."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Process | None = None

    def start(self, timeout: float = 90) -> None:
        command = mlflow_command(Settings(home=self.folder), "127.0.0.1", self.port)
        self.process = start(command, self.folder / "mlflow.log", MLFLOW_ENV)
        wait_until(self.answers, self.process, "mlflow server", timeout)

    def stop(self) -> None:
        self.process.stop(timeout=10)
        deadline = time.monotonic() + 10
        while listening("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
