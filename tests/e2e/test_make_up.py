"""`gradq up` (what `make up` runs): the embedded stack comes up on local files only, trains a
job, and Ctrl-C stops every process it started."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import store.jobs
from store.db import make_engine, make_session_factory, transaction
from store.spec import JobSpec
from tests.processes import REPO
from tests.servers import free_port

pytestmark = pytest.mark.slow


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def insert_undispatched_job(database: Path, spec: dict) -> str:
    full = JobSpec.model_validate(spec)
    engine = make_engine(f"sqlite:///{database}")
    with transaction(make_session_factory(engine)) as session:
        job, _ = store.jobs.create_job(
            session,
            spec=full.model_dump(mode="json"),
            experiment=full.experiment,
            name="orphan",
            dataset=full.dataset.name,
            epochs=full.training.epochs,
        )
        job_id = job.id
    engine.dispose()
    return job_id


def test_gradq_up_serves_a_job_on_local_files_and_ctrl_c_stops_everything(tmp_path):
    api_port, mlflow_port = free_port(), free_port()
    env = {
        **os.environ,
        "GRADQ_HOME": str(tmp_path / ".gradq"),
        # Nothing may reach for a server: these point at closed ports.
        "GRADQ_DATABASE_URL": "",
        "GRADQ_BROKER_URL": "",
    }
    env.pop("GRADQ_MLFLOW_TRACKING_URI", None)
    gradq = str(Path(sys.executable).parent / "gradq")
    command = [gradq, "up", "--api-port", str(api_port), "--mlflow-port", str(mlflow_port)]
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while b"gradq is up" not in log.read_bytes():
            assert up.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        started = children_of(up.pid)
        assert len(started) >= 3  # mlflow, the API, the worker (and their own children)

        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
        spec = {"dataset": {"name": "faces"}, "training": {"epochs": 50}}
        job = api.post("/v1/jobs", json=spec).raise_for_status().json()
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.1)
            job = api.get(f"/v1/jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job["error"]
        assert job["mlflow_url"].startswith(f"http://127.0.0.1:{mlflow_port}/#/experiments/")
        assert (tmp_path / ".gradq" / "gradq.db").exists()
        assert (tmp_path / ".gradq" / "mlflow.db").exists()

        # The reconciler runs too: a job committed without its message (an API that died
        # between the commit and the send) is sent by it, and trains.
        orphan = insert_undispatched_job(tmp_path / ".gradq" / "gradq.db", spec)
        deadline = time.monotonic() + 60
        while api.get(f"/v1/jobs/{orphan}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the reconciler never sent the orphaned job"
            time.sleep(0.2)

        up.send_signal(signal.SIGINT)  # Ctrl-C
        assert up.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while {pid for pid in started if Path(f"/proc/{pid}").exists()}:
            assert time.monotonic() < deadline, "children outlived gradq up"
            time.sleep(0.2)
    finally:
        if up.poll() is None:
            up.kill()
        for pid in children_of(up.pid):
            os.kill(pid, signal.SIGKILL)
