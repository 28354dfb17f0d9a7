"""The start of one attempt at a job: the claim, its MLflow run (an earlier attempt's,
continued) and the checkpoint it resumes from."""

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from mlflow.tracking import MlflowClient
from sqlalchemy.orm import Session, sessionmaker

import store.jobs
from contract.spec import JobSpec, flatten
from models.serialization import Checkpoint
from settings import Settings
from store.db import transaction
from store.tables import Job, JobEvent
from workers import metrics_spool, mlflow_process, mlflow_retry, sweep_runs, tracking
from workers.checkpoints import store_for
from workers.data import TrainingData
from workers.heartbeat import Heartbeat

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """What one attempt at a job works with."""

    job_id: str
    number: int
    owner: str
    stored_spec: dict[str, Any]
    mlflow_run_id: str | None  # an earlier attempt's run, continued
    sweep_id: str | None = None  # the sweep the job is a trial of
    phases: "Phases" = field(default_factory=lambda: Phases())

    @property
    def spec(self) -> JobSpec:
        """The spec, read at first use: a spec that no longer validates fails the job."""
        if not hasattr(self, "_spec"):
            self._spec = JobSpec.model_validate(self.stored_spec)
        return self._spec


@dataclass
class AttemptContext:
    """What the steps of a claimed attempt share: the attempt, where its state goes (SQL,
    MLflow, the heartbeat) and, once made, its MLflow run and metrics buffer."""

    attempt: Attempt
    settings: Settings
    session_factory: sessionmaker[Session]
    client: MlflowClient
    heartbeat: Heartbeat
    run: tracking.RunRef | None = None
    buffer: metrics_spool.MetricsBuffer | None = None
    send: Callable[[str], None] | None = None  # publishes a job's message (None: the outbox's)
    paused_at_rung: bool = False  # handed back waiting at a rung of its sweep's halving


class Phases:
    """Seconds spent per phase of an attempt, for the log line that ends it: the fixed cost
    of a small job is MLflow's, and this shows how much (DESIGN.md section 11)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def __str__(self) -> str:
        return ", ".join(f"{name} {1000 * s:.0f} ms" for name, s in self.seconds.items())


def claim(
    job_id: str, settings: Settings, session_factory: sessionmaker[Session], owner: str
) -> Attempt | None:
    """Take the job, or record that a delivery found nothing to do."""
    with transaction(session_factory) as session:
        job = store.jobs.claim(session, job_id, owner, settings.lease_seconds)
        if job is not None:
            return Attempt(job.id, job.attempts, owner, job.spec, job.mlflow_run_id, job.sweep_id)
        found = session.get(Job, job_id)
        if found is None:
            log.warning("job %s does not exist: nothing to do", job_id)
            return None
        log.info("job %s already claimed or finished: nothing to do", job_id)
        session.add(
            JobEvent(
                job_id=job_id,
                from_status=found.status,
                to_status=found.status,
                attempt=found.attempts,
                detail=f"duplicate delivery ignored (by {owner})",
            )
        )
    return None


def start_tracking(
    client: MlflowClient,
    attempt: Attempt,
    session_factory: sessionmaker[Session],
    retry: bool = False,
) -> tracking.RunRef:
    """The job's MLflow run, its id stored in SQL at once so a later attempt continues it.
    retry: an earlier call of this attempt failed, perhaps after MLflow made the run."""
    tags = {
        **attempt.spec.tags,
        "gradq.job_id": attempt.job_id,
        "gradq.attempt": str(attempt.number),
        "gradq.worker": attempt.owner,
        "gradq.dataset": attempt.spec.dataset.name,
    }
    if attempt.sweep_id is not None:  # a trial: its run is a child of the sweep's
        tags |= sweep_runs.child_tags(client, session_factory, attempt.sweep_id)
    existing = attempt.mlflow_run_id
    if existing is None and (attempt.number > 1 or retry):  # a first try does not search
        existing = tracking.unrecorded_run(client, attempt.spec.experiment, attempt.job_id)
    run = tracking.start_run(
        client,
        experiment=attempt.spec.experiment,
        run_name=attempt.spec.name or attempt.job_id,
        tags=tags,
        existing_run_id=existing,
    )
    if run.run_id != attempt.mlflow_run_id:
        try:
            with transaction(session_factory) as session:
                store.jobs.set_mlflow_run(session, attempt.job_id, run.experiment_id, run.run_id)
        except Exception:
            # This attempt fails. Its run must not stay RUNNING for ever: SQL does not know it,
            # so the reconciler cannot close it. A later attempt, if any, continues it.
            with suppress(Exception):
                tracking.end_run(client, run.run_id, "failed")
            raise
    return run


def log_data_to_run(
    client: MlflowClient, run_id: str, attempt: Attempt, data: TrainingData
) -> None:
    """Params, the dataset's digest and the dataset input: what the run was trained on."""
    spec_dict = attempt.spec.model_dump(mode="json")
    tracking.log_params_and_tags(
        client, run_id, flatten(spec_dict), {"gradq.dataset_sha256": data.sha256}
    )
    tracking.log_dataset(
        client, run_id, attempt.spec.dataset.name, data.dataset, data.sha256, data.path
    )


def start_or_resume(
    client: MlflowClient,
    attempt: Attempt,
    settings: Settings,
    session_factory: sessionmaker[Session],
) -> tuple[tracking.RunRef, metrics_spool.MetricsBuffer, Checkpoint | None]:
    """The job's run (an earlier attempt's, continued), a metrics buffer that skips the steps
    the run already has, and the checkpoint to resume from (None: start at epoch 0)."""
    wait = settings.mlflow_wait_seconds
    tries = itertools.count()
    run = mlflow_retry.wait_for(
        lambda: start_tracking(client, attempt, session_factory, retry=next(tries) > 0),
        wait,
        "start run",
    )
    training = attempt.spec.training
    logged = metrics_spool.Logged()
    if attempt.number > 1:  # an earlier attempt's run, recorded in SQL or found by its tag
        logged = mlflow_retry.wait_for(
            lambda: metrics_spool.logged_steps(
                client, run.run_id, training.log_every, training.epochs
            ),
            wait,
            "read logged steps",
        )
    buffer = metrics_spool.MetricsBuffer(
        client,
        run.run_id,
        settings.metrics_flush_seconds,
        logged=logged,
        max_values=settings.metrics_spool_max,
        send=mlflow_process.for_settings(settings).log_metrics,
        log_every=training.log_every,
        epochs=training.epochs,
        stall_seconds=settings.mlflow_timeout_seconds,
    )
    resume = None
    if attempt.number > 1:  # only an earlier attempt writes checkpoints: none to look for
        checkpoints = store_for(settings)
        resume = mlflow_retry.wait_for(  # in MLflow's artifacts with GRADQ_CHECKPOINT_STORE=mlflow
            lambda: checkpoints.load_latest(attempt.job_id), wait, "read the newest checkpoint"
        )
    if resume is not None:
        # Steps the last attempt computed but may not have delivered before it stopped.
        buffer.add_history(resume.history)
        log.info("job %s resumes at epoch %d", attempt.job_id, resume.epoch)
    if attempt.number > 1:
        record_start(attempt, session_factory, resume)
    return run, buffer, resume


def record_start(
    attempt: Attempt, session_factory: sessionmaker[Session], resume: Checkpoint | None
) -> None:
    """An event saying where a later attempt started: from a checkpoint, or over from epoch 0
    (none was found: never written, or on a disk this worker does not see)."""
    if resume is not None:
        detail = f"resumed at epoch {resume.epoch}"
    else:
        detail = "no checkpoint found: started again at epoch 0"
        log.info("job %s: %s", attempt.job_id, detail)
    with transaction(session_factory) as session:
        session.add(
            JobEvent(
                job_id=attempt.job_id,
                from_status="running",
                to_status="running",
                attempt=attempt.number,
                detail=f"{detail} (by {attempt.owner})",
            )
        )
