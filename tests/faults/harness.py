"""A whole stack for fault injection (the API, Celery workers, the reconciler) started with the
commands of `make up` and compose, and the oracle every test ends with: what SQL, the API's
202s and MLflow say about each job."""

import collections
import os
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from mlflow.tracking import MlflowClient

from service.stack import api_command, reconciler_command, worker_command
from store.db import make_engine, make_session_factory, transaction
from store.tables import FINAL_STATUSES, Job, JobEvent
from tests.processes import Process, gradq_env, start, wait_until
from tests.servers import free_port, unique_name

# Seconds, tuned down through the settings production reads: a lost worker is noticed in ~3 s.
FAST_SETTINGS = {
    "lease_seconds": 3,
    "reconcile_seconds": 0.5,
    "redispatch_seconds": 5,
    "progress_seconds": 0.2,
    "metrics_flush_seconds": 0.3,
    "mlflow_wait_seconds": 120,
}


def mlp_spec(experiment: str, epochs: int, **training) -> dict:
    """A [64, 32] network on digits, full-batch gradient descent: ~1.5 ms per epoch here."""
    return {
        "experiment": experiment,
        "dataset": {"name": "digits"},
        "model": {"hidden_layers": [64, 32], "hidden_activation": "relu", "output": "softmax"},
        "training": {
            "optimizer": "gd",
            "learning_rate": 0.05,
            "epochs": epochs,
            "checkpoint_every": 100,
            **training,
        },
    }


@dataclass
class Counts:
    submitted: int
    succeeded: int
    failed: int
    cancelled: int
    lost: int  # accepted with 202 but not finished
    duplicate_runs: int  # jobs with other than one MLflow run
    bad_curves: int  # succeeded jobs whose cost is not one point per epoch

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.__dict__.items())


class FaultStack:
    def __init__(self, exit_stack: ExitStack, home: Path, *, database_url: str, broker_url: str,
                 mlflow_url: str, **settings):  # fmt: skip
        self.exit_stack = exit_stack
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = gradq_env(
            home=home,
            database_url=database_url,
            broker_url=broker_url,
            mlflow_tracking_uri=mlflow_url,
            **{**FAST_SETTINGS, **settings},
        )
        self.experiment = unique_name("faults")
        self.mlflow = MlflowClient(mlflow_url)
        engine = make_engine(database_url)
        exit_stack.callback(engine.dispose)
        self.sql = make_session_factory(engine)
        self.api_url = ""
        self.workers: dict[str, Process] = {}

    # -- processes ---------------------------------------------------------------------------

    def start(self, workers: int = 1, concurrency: int = 2) -> "FaultStack":
        """The API, ``workers`` workers and the reconciler, started together."""
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        api = self._start("api", api_command("127.0.0.1", port))
        names = [self.start_worker(f"w{n}", concurrency, wait=False) for n in range(workers)]
        reconciler = self._start("reconciler", reconciler_command())
        wait_until(lambda: _answers(f"{self.api_url}/healthz"), api, "API", 60)
        for name in names:
            self.wait_ready(name)
        wait_until(lambda: " ready." in reconciler.log_text(), reconciler, "reconciler", 60)
        self.http = httpx.Client(base_url=self.api_url, timeout=30)
        self.exit_stack.callback(self.http.close)
        return self

    def start_worker(self, name: str, concurrency: int = 2, wait: bool = True) -> str:
        command = [
            *worker_command(concurrency),
            "--hostname", f"{name}-{os.getpid()}@%h", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        self.workers[name] = self._start(name, command)
        if wait:
            self.wait_ready(name)
        return name

    def wait_ready(self, name: str) -> None:
        worker = self.workers[name]
        wait_until(lambda: " ready." in worker.log_text(), worker, f"worker {name}", 60)

    def _start(self, name: str, command: list[str]) -> Process:
        process = start(command, self.home / f"{name}.log", self.env)
        self.exit_stack.callback(process.stop, 10.0, signal.SIGKILL)
        return process

    # -- the API -----------------------------------------------------------------------------

    def submit(self, spec: dict, key: str | None = None) -> str:
        response = self.post(spec, key)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def post(self, spec: dict, key: str | None = None, client: httpx.Client | None = None):
        headers = {"Idempotency-Key": key} if key else {}
        return (client or self.http).post("/v1/jobs", json=spec, headers=headers)

    # -- SQL ---------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        with transaction(self.sql) as session:
            return session.get(Job, job_id)

    def jobs(self, ids) -> dict[str, Job]:
        with transaction(self.sql) as session:
            rows = session.query(Job).filter(Job.id.in_(list(ids))).all()
            return {job.id: job for job in rows}

    def events(self, job_id: str) -> list[JobEvent]:
        with transaction(self.sql) as session:
            query = session.query(JobEvent).filter(JobEvent.job_id == job_id)
            return query.order_by(JobEvent.id).all()

    def wait_until_running(self, job_id: str, min_epoch: int = 0, timeout: float = 60) -> Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job.status == "running" and (job.progress_epoch or 0) >= min_epoch:
                return job
            assert job.status not in FINAL_STATUSES, f"job {job_id} ended {job.status}"
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} not running past epoch {min_epoch}: {job.status}")

    def wait_until_any_running(self, ids, min_epoch: int, timeout: float = 60) -> Job:
        """The first of the jobs ``ids`` seen running past ``min_epoch``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job in self.jobs(ids).values():
                if job.status == "running" and (job.progress_epoch or 0) >= min_epoch:
                    return job
            time.sleep(0.02)
        raise AssertionError(f"none of {len(ids)} jobs running past epoch {min_epoch}")

    def wait_final(self, ids, timeout: float) -> dict[str, Job]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs(ids)
            pending = [j for j in jobs.values() if j.status not in FINAL_STATUSES]
            if not pending or time.monotonic() > deadline:
                return jobs
            time.sleep(0.2)

    # -- the oracle --------------------------------------------------------------------------

    def report(self, ids: list[str], timeout: float) -> tuple[Counts, dict[str, Job]]:
        """Wait for the jobs to end, then count what SQL and MLflow say; printed."""
        jobs = self.wait_final(ids, timeout)
        statuses = collections.Counter(job.status for job in jobs.values())
        runs = self.runs_by_job()
        counts = Counts(
            submitted=len(ids),
            succeeded=statuses["succeeded"],
            failed=statuses["failed"],
            cancelled=statuses["cancelled"],
            lost=len(ids) - sum(statuses[s] for s in FINAL_STATUSES),
            duplicate_runs=sum(1 for job_id in ids if len(runs.get(job_id, [])) > 1),
            bad_curves=sum(
                1 for job in jobs.values()
                if job.status == "succeeded" and self.cost_steps(job) != list(range(job.epochs))
            ),
        )  # fmt: skip
        print(f"fault-injection counts: {counts}")
        return counts, jobs

    def runs_by_job(self) -> dict[str, list]:
        experiment = self.mlflow.get_experiment_by_name(self.experiment)
        if experiment is None:
            return {}
        runs = self.mlflow.search_runs([experiment.experiment_id], max_results=5000)
        grouped = collections.defaultdict(list)
        for run in runs:
            grouped[run.data.tags.get("gradq.job_id")].append(run)
        return grouped

    def cost_steps(self, job: Job) -> list[int]:
        """The steps of the job's cost curve in MLflow, in order, repeats included."""
        return sorted(m.step for m in self.mlflow.get_metric_history(job.mlflow_run_id, "cost"))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def kill_job_process(job: Job) -> int:
    """SIGKILL the pool process that holds ``job``'s lease (its owner is ``hostname/pid``)."""
    pid = int(job.lease_owner.rsplit("/", 1)[1])
    os.kill(pid, signal.SIGKILL)
    return pid
