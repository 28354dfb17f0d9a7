"""Alembic owns the schema: the revisions build exactly the tables the code declares, and go
down and up again, on SQLite and PostgreSQL."""

from datetime import UTC, datetime

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
