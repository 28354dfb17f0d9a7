"""Fixtures shared by the whole suite: migrated databases on SQLite and PostgreSQL."""

import pytest

from store.db import make_engine, make_session_factory
from store.migrate import upgrade
from tests.servers import fresh_postgres_database


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A new, migrated SQLite database file."""
    url = f"sqlite:///{tmp_path / 'gradq.db'}"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url():
    """A new, migrated PostgreSQL database, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    """Each test that takes it runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def session_factory(database_url):
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()
