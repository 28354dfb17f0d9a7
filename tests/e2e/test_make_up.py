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
from contract.spec import JobSpec
from store.db import make_engine, make_session_factory, transaction
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


def hear_ctrl_c() -> None:
    """As in a terminal's foreground: a suite started in the background by a shell (`&`)
    passes SIGINT on ignored, and Python then never raises KeyboardInterrupt for it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_gradq_up(
    tmp_path: Path, api_port: int, mlflow_port: int, log_name: str, **extra_env: str
):
    """`gradq up` on local files in tmp_path, once it says it is up."""
    env = {
        **os.environ,
        **extra_env,
        "GRADQ_HOME": str(tmp_path / ".gradq"),
        # Nothing may reach for a server: these point at closed ports.
        "GRADQ_DATABASE_URL": "",
        "GRADQ_BROKER_URL": "",
    }
    env.pop("GRADQ_MLFLOW_TRACKING_URI", None)
    gradq = str(Path(sys.executable).parent / "gradq")
    command = [gradq, "up", "--api-port", str(api_port), "--mlflow-port", str(mlflow_port)]
    log = tmp_path / log_name
    with log.open("wb") as out:
        up = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=hear_ctrl_c,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while b"gradq is up" not in log.read_bytes():
        if up.poll() is not None or time.monotonic() > deadline:
            stop_gradq_up(up)
            raise AssertionError(log.read_text()[-3000:])
        time.sleep(0.2)
    return up


def ctrl_c(up: subprocess.Popen) -> None:
    """Ctrl-C, and every process gradq up started is gone within seconds."""
    started = children_of(up.pid)
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while {pid for pid in started if Path(f"/proc/{pid}").exists()}:
        assert time.monotonic() < deadline, "children outlived gradq up"
        time.sleep(0.2)


def stop_gradq_up(up: subprocess.Popen) -> None:
    for pid in children_of(up.pid):
        os.kill(pid, signal.SIGKILL)
    if up.poll() is None:
        up.kill()


def wait_for_status(api: httpx.Client, job_id: str, statuses: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + 90
    while (job := api.get(f"/v1/jobs/{job_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.1)
    return job


def test_gradq_up_serves_a_job_on_local_files_and_ctrl_c_stops_everything(tmp_path):
    api_port, mlflow_port = free_port(), free_port()
    up = start_gradq_up(tmp_path, api_port, mlflow_port, "up.log")
    try:
        assert len(children_of(up.pid)) >= 4  # mlflow, the API, the worker, the reconciler
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
        spec = {"dataset": {"name": "faces"}, "training": {"epochs": 50}}
        job = api.post("/v1/jobs", json=spec).raise_for_status().json()
        job = wait_for_status(api, job["id"], ("succeeded", "failed", "cancelled"))
        assert job["status"] == "succeeded", job["error"]
        assert job["mlflow_url"].startswith(f"http://127.0.0.1:{mlflow_port}/#/experiments/")
        assert (tmp_path / ".gradq" / "gradq.db").exists()
        assert (tmp_path / ".gradq" / "mlflow.db").exists()

        # The reconciler runs too: a job committed without its message (an API that died
        # between the commit and the send) is sent by it, and trains.
        orphan = insert_undispatched_job(tmp_path / ".gradq" / "gradq.db", spec)
        assert wait_for_status(api, orphan, ("succeeded",))["attempts"] == 1

        ctrl_c(up)
    finally:
        stop_gradq_up(up)


def test_ctrl_c_hands_a_running_job_back_and_the_next_gradq_up_resumes_it(tmp_path):
    api_port, mlflow_port = free_port(), free_port()
    up = start_gradq_up(tmp_path, api_port, mlflow_port, "up.log")
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
        spec = {
            "dataset": {"name": "digits"},
            "model": {"hidden_layers": [64, 32]},
            "training": {"epochs": 20_000, "learning_rate": 0.05, "checkpoint_every": 500},
        }
        job_id = api.post("/v1/jobs", json=spec).raise_for_status().json()["id"]
        deadline = time.monotonic() + 60
        while not (api.get(f"/v1/jobs/{job_id}").json()["progress"]["epoch"] or 0) > 100:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ctrl_c(up)

        up = start_gradq_up(tmp_path, api_port, mlflow_port, "up-again.log")
        job = api.get(f"/v1/jobs/{job_id}").json()
        handed_back = [e for e in job["events"] if (e["from_status"], e["to_status"]) == (
            "running", "queued")]  # fmt: skip
        assert len(handed_back) == 1 and "handed back at epoch" in handed_back[0]["detail"]
        resumed_at = int(handed_back[0]["detail"].split("epoch ")[1].split(":")[0])
        deadline = time.monotonic() + 60
        while (job := api.get(f"/v1/jobs/{job_id}").json())["progress"]["epoch"] == resumed_at:
            assert time.monotonic() < deadline, "the job never resumed"
            time.sleep(0.1)
        assert job["attempts"] == 2
        assert job["progress"]["epoch"] > resumed_at  # from the checkpoint, not from epoch 0
        ctrl_c(up)  # and it goes back again, to be finished by a later `make up`
    finally:
        stop_gradq_up(up)
