"""Alembic owns the schema: the revisions build exactly the tables the code declares, and go
down and up again, on SQLite and PostgreSQL."""

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from store.migrate import downgrade, upgrade
from store.tables import Base


def test_migrated_schema_matches_the_declared_tables(database_url):
    engine = create_engine(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_migrations_go_down_to_nothing_and_up_again(database_url):
    engine = create_engine(database_url)
    downgrade(database_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(database_url)
    assert {"jobs", "job_events", "datasets"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_sqlite_connections_use_wal_and_a_busy_timeout(sqlite_url):
    from store.db import make_engine

    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()


def test_upgrading_to_0002_counts_the_runs_of_finished_jobs_as_closed(database_url):
    """Their workers closed them: the reconciler must not end them again (new end times)."""
    downgrade(database_url, "0001")
    engine = create_engine(database_url)
    finished_at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    row = (
        "INSERT INTO jobs (id, experiment, status, spec, dataset, attempts, max_attempts, "
        "cancel_requested, epochs, created_at, updated_at, finished_at, mlflow_run_id) "
        "VALUES (:id, 'e', :status, '{}', 'faces', 1, 3, :no, 10, :at, :at, :finished, :run)"
    )
    with engine.begin() as connection:
        for job_id, status, run in (("a", "succeeded", "r1"), ("b", "running", "r2")):
            connection.execute(text(row), {
                "id": job_id, "status": status, "no": False, "at": finished_at,
                "finished": finished_at if status == "succeeded" else None, "run": run,
            })  # fmt: skip

    upgrade(database_url)

    with engine.connect() as connection:
        closed = dict(connection.execute(text("SELECT id, mlflow_closed_at FROM jobs")).all())
    engine.dispose()
    assert closed["b"] is None
    value = closed["a"]
    if isinstance(value, str):  # SQLite hands back its text
        value = datetime.fromisoformat(value)
    assert (value if value.tzinfo else value.replace(tzinfo=UTC)) == finished_at


def _job_with_events(connection, job_id: str) -> None:
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    connection.execute(
        text(
            "INSERT INTO jobs (id, experiment, status, spec, dataset, attempts, max_attempts, "
            "cancel_requested, epochs, created_at, updated_at) "
            "VALUES (:id, 'e', 'queued', '{}', 'faces', 0, 3, :no, 10, :at, :at)"
        ),
        {"id": job_id, "no": False, "at": at},
    )
    for to_status in ("queued", "running"):
        connection.execute(
            text(
                "INSERT INTO job_events (job_id, at, to_status, attempt) VALUES (:id, :at, :to, 0)"
            ),
            {"id": job_id, "at": at, "to": to_status},
        )


def _events(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM job_events")).scalar()


@pytest.mark.parametrize("start", ["0001", "0003"])
def test_migrations_keep_every_job_event_going_up_and_down(database_url, start):
    """SQLite with foreign keys on, as every gradq connection has them: a batch copy of jobs
    (0002's) dropped the old table and so cascade-deleted every job_events row."""
    from store.db import make_engine

    downgrade(database_url, start)
    engine = make_engine(database_url)
    with engine.begin() as connection:
        _job_with_events(connection, "a")

    upgrade(database_url)
    assert _events(engine) == 2
    with engine.connect() as connection:
        assert connection.execute(text("SELECT token_fingerprint FROM jobs")).all() == [(None,)]

    downgrade(database_url, start)
    assert _events(engine) == 2
    upgrade(database_url)
    assert _events(engine) == 2
    engine.dispose()
