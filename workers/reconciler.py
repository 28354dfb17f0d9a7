"""The reconciler: one pass, run every ``settings.reconcile_seconds`` by Celery beat.

SQL is the source of truth and the broker only a delivery channel (DESIGN.md section 1), so
one pass puts the two back in agreement:

- a running job whose lease expired (its worker died) goes back to queued and is sent again,
  or fails once ``max_attempts`` claims were used (a poison job stops there);
- a queued job whose message was never sent, or went unclaimed for ``redispatch_seconds``
  (a Redis restarted without persistence), is sent again;
- the MLflow run of a job that ended while its worker could not close it (MLflow down, the
  worker dead) gets its final status, and the gradq.metrics_incomplete tag when the job's
  events say its metric curve is incomplete;
- a sweep's trial waiting at a rung of its halving is promoted or stopped once the rung is
  complete, if whoever should have done it died (store/rungs.py);
- a sweep's parent run shows its trials as they end, and ends with the last of them
  (workers/sweep_runs.py).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient
from sqlalchemy.orm import Session, sessionmaker

from contract.halving import stop_tags
from settings import Settings
from store import recovery, rungs
from store.db import transaction
from store.jobs import METRICS_INCOMPLETE
from workers import metrics_spool, mlflow_retry, sweep_runs, tracking
from workers.checkpoints import store_for

log = logging.getLogger(__name__)


@dataclass
class Pass:
    """What one pass did, by job id."""

    requeued: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)  # failed or cancelled after a lost worker
    sent: list[str] = field(default_factory=list)
    runs_closed: list[str] = field(default_factory=list)
    parents_synced: list[str] = field(default_factory=list)  # sweeps, by id


def reconcile(
    factory: sessionmaker[Session],
    settings: Settings,
    send: Callable[[str], None],
    mlflow: MlflowClient,
    backlog: Callable[[], int | None] = lambda: None,
) -> Pass:
    """One pass. ``backlog()``: how many messages wait in the broker's training queue, None
    if it cannot tell."""
    done = Pass()
    with transaction(factory) as session:
        expired = recovery.expire_leases(session)
    settled = rungs.Settled()
    try:  # not to hold back the rest of the pass: the next one settles them
        with transaction(factory) as session:
            settled = rungs.settle_waiting(session)
    except Exception:
        log.exception("sweeps' waiting trials not settled")
    waiting = backlog()
    with transaction(factory) as session:
        # A long queue is no lost message: while the broker holds a message per queued job,
        # re-sending the stale ones would only pile up duplicates.
        lost = waiting is None or waiting < recovery.count_queued(session)
        stale = recovery.to_dispatch(session, settings.redispatch_seconds, include_stale=lost)
    checkpoints = store_for(settings)
    done.requeued = [job.job_id for job in expired if job.status == "queued"]
    done.ended = [job.job_id for job in expired if job.status != "queued"] + settled.stopped
    done.sent = [*done.requeued, *settled.released, *stale]
    for job_id in done.sent:  # first: MLflow may be slow or down, the broker is not waiting
        send(job_id)
    for job_id in done.ended:
        checkpoints.discard(job_id)
    schedule_runs([job.mlflow_run_id for job in expired if job.status == "queued"], mlflow)
    done.runs_closed = close_open_runs(factory, mlflow)
    done.parents_synced = sweep_runs.sync_parents(factory, mlflow)
    if any((done.requeued, done.ended, done.sent, done.runs_closed, done.parents_synced)):
        log.info(
            "reconciled: %d requeued, %d ended, %d sent, %d MLflow runs closed, "
            "%d sweeps' parent runs updated",
            len(done.requeued), len(done.ended), len(done.sent), len(done.runs_closed),
            len(done.parents_synced),
        )  # fmt: skip
    return done


def close_open_runs(factory: sessionmaker[Session], mlflow: MlflowClient) -> list[str]:
    """End the MLflow runs of finished jobs that their worker could not end; returns the job
    ids whose runs were closed. MLflow still down: they wait for the next pass."""
    with transaction(factory) as session:
        open_runs = recovery.runs_to_close(session)
        # Trials stopped while waiting at a rung: their verdict goes on the run as tags.
        stops = {run.job_id: rungs.stopped_verdict(session, run.job_id)
                 for run in open_runs if run.status == "cancelled"}  # fmt: skip
    closed = []
    for run in open_runs:
        tags = {}
        if run.error:
            tags["gradq.error"] = run.error[:5000]
        if run.metrics_incomplete:
            incomplete = run.metrics_incomplete.removeprefix(METRICS_INCOMPLETE)
            tags[metrics_spool.METRICS_INCOMPLETE_TAG] = incomplete
        if verdict := stops.get(run.job_id):
            tags.update(stop_tags(verdict))
        try:
            if tags:
                mlflow.log_batch(run.mlflow_run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            tracking.end_run(mlflow, run.mlflow_run_id, run.status)
        except Exception as error:
            if mlflow_retry.unreachable(error):
                log.warning("MLflow run %s not closed yet: %s", run.mlflow_run_id, error)
                break  # MLflow is down: the rest wait for the next pass too
            # An answer that will not change (the run was deleted, or never existed): nothing
            # more to do for this one, and it must not hold back the others.
            log.warning("MLflow run %s cannot be closed, skipped: %s", run.mlflow_run_id, error)
        with transaction(factory) as session:
            recovery.mark_mlflow_closed(session, run.job_id)
        closed.append(run.job_id)
    return closed


def schedule_runs(run_ids: list[str | None], mlflow: MlflowClient) -> None:
    """Mark the runs of jobs queued again SCHEDULED (their next attempt sets them RUNNING);
    best effort: MLflow down, the rest are skipped."""
    for run_id in filter(None, run_ids):
        try:
            tracking.mark_scheduled(mlflow, run_id)
        except Exception as error:
            log.warning("MLflow run %s not marked SCHEDULED: %s", run_id, error)
            if mlflow_retry.unreachable(error):
                return
