"""GRADQ_LOG_FORMAT=json: a real worker logs one JSON object a line, and every line it logs while
it runs a job carries the job id and the attempt; the API's uvicorn too. An unknown format stops
a process at its start, naming the variable."""

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

from service.stack import api_command, reconciler_command
from settings import Settings
from store.db import make_engine, make_session_factory
from store.migrate import upgrade
from tests.processes import REPO, gradq_env, start, start_celery_worker, wait_until
from tests.servers import free_port
from tests.workers.helpers import FACES_LOGREG, create_job, get_job, with_experiment
from tests.workers.test_celery import WORKER_SETTINGS, producer, wait_for_status

CELERY_DONE = "] succeeded in"  # Celery's line ending the task, logged by the pool child


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` as JSON; fails naming the first line that is not."""
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    return records


def test_a_worker_logs_json_lines_naming_the_job_and_attempt_while_it_runs_one(
    tmp_path, sqlite_url, mlflow_server
):
    home = tmp_path / "gradq"
    settings = Settings(home=home, database_url=sqlite_url)
    session_factory = make_session_factory(make_engine(sqlite_url))
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    env = gradq_env(
        home=home, database_url=sqlite_url, mlflow_tracking_uri=mlflow_server.url,
        log_format="json", **WORKER_SETTINGS,
    )  # fmt: skip
    log = tmp_path / "worker.log"
    worker = start_celery_worker(log, env)
    try:
        producer(settings).send_task("gradq.train", args=[job_id])
        wait_for_status(session_factory, job_id, "succeeded", timeout=180)  # a busy machine
        wait_until(lambda: CELERY_DONE in log.read_text(), worker, "the task's end", 30)
    finally:
        worker.stop(sig=signal.SIGKILL)

    records = json_lines(log.read_text())
    assert {"time", "level", "logger", "process", "message"} <= set(records[0])
    main = records[0]["process"]  # the worker's main process: it receives, never runs, a job
    received = next(i for i, r in enumerate(records) if "Task gradq.train[" in r["message"])
    done = next(i for i, r in enumerate(records) if CELERY_DONE in r["message"])
    # From the pool child and the MLflow helper it runs, while the job runs: every line.
    during = [r for r in records[received + 1 : done + 1] if r["process"] != main]
    assert any(f"job {job_id} succeeded" in r["message"] for r in during)
    assert records[done] in during
    assert {(r.get("job_id"), r.get("attempt")) for r in during} == {(job_id, 1)}, [
        r for r in during if r.get("job_id") != job_id
    ]
    job = get_job(session_factory, job_id)
    assert job.attempts == 1
    assert job.metrics_unsent == 0  # its heartbeats reported the spool, empty at the end
    assert not any("job_id" in r for r in records[: received + 1])


def test_the_api_logs_json_lines_under_uvicorn(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    upgrade(f"sqlite:///{home / 'gradq.db'}")
    port = free_port()
    env = gradq_env(home=home, database_url="", broker_url="", log_format="json")
    log = tmp_path / "api.log"
    api = start(api_command("127.0.0.1", port), log, env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/healthz"), api, "uvicorn", 60)
        httpx.get(f"{url}/v1/jobs/nothing", timeout=5)
    finally:
        api.stop()

    records = json_lines(log.read_text())
    messages = [r["message"] for r in records]
    assert any("Uvicorn running" in m for m in messages)
    assert any("/v1/jobs/nothing" in m and "404" in m for m in messages)  # the access log
    assert all("job_id" not in r for r in records)  # no job runs in the API


def test_the_reconciler_logs_json_lines(tmp_path, sqlite_url):
    env = gradq_env(
        home=tmp_path / "gradq", database_url=sqlite_url, log_format="json", reconcile_seconds=0.5
    )
    log = tmp_path / "reconciler.log"
    reconciler = start(reconciler_command(), log, env)
    try:
        wait_until(lambda: "gradq.reconcile[" in log.read_text(), reconciler, "a pass", 60)
    finally:
        reconciler.stop(sig=signal.SIGKILL)

    records = json_lines(log.read_text())
    assert any(r["logger"] == "celery.beat" for r in records)
    assert all("job_id" not in r for r in records)


@pytest.mark.parametrize("program", ["api", "worker"])
def test_an_unknown_log_format_stops_a_process_at_start_naming_the_variable(tmp_path, program):
    command = {
        "api": api_command("127.0.0.1", free_port()),
        "worker": [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker"],
    }[program]
    env = {**os.environ, **gradq_env(home=tmp_path, log_format="xml")}

    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert "GRADQ_LOG_FORMAT must be 'text' or 'json', not 'xml'" in result.stdout + result.stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
