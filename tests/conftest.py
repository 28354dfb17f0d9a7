"""Fixtures shared by the whole suite: migrated databases on SQLite and PostgreSQL."""

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from store.db import make_engine, make_session_factory
from store.migrate import upgrade
from tests.servers import POSTGRES_ADMIN_URL, need, unique_name


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A new, migrated SQLite database file."""
    url = f"sqlite:///{tmp_path / 'gradq.db'}"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url():
    """A new, migrated PostgreSQL database, dropped afterwards."""
    admin = make_url(POSTGRES_ADMIN_URL)
    need("PostgreSQL", admin.host or "127.0.0.1", admin.port or 5432)
    name = unique_name("gradq_test")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    """Each test that takes it runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def session_factory(database_url):
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()
