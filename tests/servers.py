"""The real servers tests run against, and what to do when one is missing.

PostgreSQL, Redis and RabbitMQ run on the developers' and CI's machines. Without them a test
that needs one is skipped with the reason, except under CI=true, where a missing server fails.
"""

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ADMIN_URL = os.environ.get(
    "GRADQ_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("GRADQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def need(name: str, host: str, port: int) -> None:
    """Skip (or, under CI=true, fail) unless ``name`` listens on host:port."""
    if not listening(host, port):
        unavailable(f"{name} is not running on {host}:{port}")


def unavailable(reason: str) -> None:
    """Skip the test for ``reason``, or fail it under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true requires it")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextmanager
def empty_postgres_database(prefix: str = "gradq_test") -> Iterator[str]:
    """A new, empty PostgreSQL database named ``prefix``_<random>, dropped on exit."""
    admin = make_url(POSTGRES_ADMIN_URL)
    name = unique_name(prefix)
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database, migrated to the newest schema, dropped on exit."""
    from store.migrate import upgrade

    admin = make_url(POSTGRES_ADMIN_URL)
    need("PostgreSQL", admin.host or "127.0.0.1", admin.port or 5432)
    with empty_postgres_database() as url:
        upgrade(url)
        yield url
