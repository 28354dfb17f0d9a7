"""The servers that bench/job_overhead.py and bench/job_timeline.py run ``run_job`` against, in
their own process: a migrated PostgreSQL database for the jobs, a real ``mlflow server`` on
another, and a temporary home."""

import tempfile
from contextlib import ExitStack
from pathlib import Path

from store.migrate import upgrade
from tests.processes import start_mlflow_server
from tests.servers import empty_postgres_database


def job_servers(stack: ExitStack, name: str) -> dict:
    """Start them, each stopped or removed when ``stack`` closes; returns the Settings fields
    that point at them (home, database_url, mlflow_tracking_uri)."""
    home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"gradq-{name}-")))
    jobs_db = stack.enter_context(empty_postgres_database("gradq_bench_jobs"))
    mlflow_db = stack.enter_context(empty_postgres_database("gradq_bench_mlflow"))
    upgrade(jobs_db)
    mlflow = start_mlflow_server(home / "mlflow", backend_store_uri=mlflow_db)
    stack.callback(mlflow.stop)
    return {"home": home, "database_url": jobs_db, "mlflow_tracking_uri": mlflow.url}
