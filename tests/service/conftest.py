"""Fixtures for the API tests: an app on each database, a real broker (Redis or the
filesystem), and a real MLflow tracking server when a test reads metrics."""

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from service.app import create_app
from settings import Settings
from store.db import make_engine, make_session_factory
from store.tables import Base
from tests.servers import REDIS_URL, free_port, fresh_postgres_database, need

REDIS_DB = 14  # a database of its own, so that purging it disturbs no other suite
QUEUE = "celery"  # Celery's default queue, which the workers consume


def task_ids_in(raw_messages: list[bytes]) -> list[tuple[str, list]]:
    """(task name, args) of each Celery message, as kombu serialised it."""
    decoded = []
    for raw in raw_messages:
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        decoded.append((message["headers"]["task"], args))
    return decoded


class RedisQueue:
    def __init__(self, url: str):
        self.url = url
        self.client = redis.Redis.from_url(url)

    def purge(self) -> None:
        for key in self.client.scan_iter(f"{QUEUE}*"):
            self.client.delete(key)

    def messages(self) -> list[tuple[str, list]]:
        return task_ids_in(self.client.lrange(QUEUE, 0, -1))


@pytest.fixture
def redis_queue():
    url = httpx.URL(REDIS_URL)
    need("Redis", url.host or "127.0.0.1", url.port or 6379)
    queue = RedisQueue(f"{REDIS_URL.rstrip('/')}/{REDIS_DB}")
    queue.purge()
    yield queue
    queue.purge()
    queue.client.close()


@pytest.fixture(scope="session")
def service_postgres_database():
    """One migrated PostgreSQL database for this folder's tests, dropped at the end."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_url(service_postgres_database) -> str:
    """Overrides the suite's fixture: emptied tables instead of a new database per test, which
    costs half a second each and would make this folder slow."""
    engine = create_engine(service_postgres_database)
    with engine.begin() as connection:
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables}"))
    engine.dispose()
    return service_postgres_database


@pytest.fixture
def make_settings(tmp_path, database_url) -> Callable[..., Settings]:
    """Settings for one test: its own home, the parametrised database, MLflow nowhere."""

    def make(**overrides) -> Settings:
        values = {
            "home": tmp_path / "home",
            "database_url": database_url,
            "mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}",
            "mlflow_ui_url": "http://mlflow.example",
        }
        return Settings(_env_file=None, **(values | overrides))

    return make


@pytest.fixture
def make_client(make_settings):
    clients = []

    def make(**overrides) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client, redis_queue) -> TestClient:
    """The API on the parametrised database, sending to Redis."""
    return make_client(broker_url=redis_queue.url)


@pytest.fixture
def rows(database_url):
    """A session factory on the test's database, to look at what the API stored."""
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


MLFLOW_SERVER = """
import os, sys
os.environ["_MLFLOW_SERVER_FILE_STORE"] = sys.argv[2]
os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = sys.argv[3]
from mlflow.server import app, handlers
from werkzeug.serving import run_simple
handlers._get_tracking_store()  # create the store's tables before answering /health
run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
"""


@pytest.fixture(scope="session", autouse=True)
def mlflow_server_process(tmp_path_factory):
    """A real MLflow tracking server (its Flask app, one process, SQLite store), started with
    the first test of this folder so that its seconds of start-up overlap the other tests
    (`mlflow server` itself takes about twenty)."""
    folder: Path = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [
        sys.executable, "-c", MLFLOW_SERVER, str(port),
        f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts"),
    ]  # fmt: skip
    log_path = folder / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}", process, log_path
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_process) -> str:
    """The tracking server's URL, once it answers."""
    url, process, log_path = mlflow_server_process
    _wait_for(url, process, log_path)
    return url


def _wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the MLflow server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the MLflow server did not answer in {seconds} s")
