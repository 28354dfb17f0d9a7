"""Fixtures of the fault-injection tests: one restartable MLflow server for the package, a
private Redis and a fresh PostgreSQL database per test, and the stack on top of them."""

from contextlib import ExitStack

import pytest

from settings import Settings
from store.migrate import upgrade
from tests.faults.harness import FaultStack
from tests.faults.servers import PrivateRedis, RestartableMlflow
from tests.servers import fresh_postgres_database


@pytest.fixture(scope="package")
def mlflow_server(tmp_path_factory):
    server = RestartableMlflow(tmp_path_factory.mktemp("faults-mlflow"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def make_stack(tmp_path, redis_server, mlflow_server):
    """make_stack(workers=1, concurrency=2, database_url="", embedded=False, **settings): the
    API, workers and the reconciler on the private Redis, the package's MLflow and a fresh
    PostgreSQL database (or ``database_url``); ``embedded``: on make up's SQLite and
    filesystem broker instead. Everything stops at the test's end."""
    home = tmp_path / "stack"
    with ExitStack() as exit_stack:

        def make(workers=1, concurrency=2, database_url="", embedded=False, **settings):
            broker_url = redis_server.url
            if embedded:
                database_url, broker_url = Settings(home=home).sql_url, ""
                home.mkdir(parents=True, exist_ok=True)
                upgrade(database_url)  # what `gradq up` does first
            elif not database_url:
                database_url = exit_stack.enter_context(fresh_postgres_database())
            stack = FaultStack(
                exit_stack,
                home,
                database_url=database_url,
                broker_url=broker_url,
                mlflow_url=mlflow_server.url,
                **settings,
            )
            return stack.start(workers, concurrency)

        yield make
