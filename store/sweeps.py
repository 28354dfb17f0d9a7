"""Queries on sweeps: create one with its trials (jobs with its id as sweep_id) in one
transaction, read a sweep and its trials, cancel them, keep its parent run (the halving's
verdicts are store/rungs.py's)."""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, not_, or_, select, update
from sqlalchemy.orm import Session

from store import jobs, pages
from store.tables import FINAL_STATUSES, Job, Sweep, utcnow


class SweepIdempotencyConflictError(Exception):
    """The Idempotency-Key was used for another sweep request."""


@dataclass
class NewSweep:
    sweep: Sweep
    trials: list[Job]
    created: bool  # False: an earlier request with the same key and body made it


def create_sweep(
    session: Session,
    *,
    request: dict[str, Any],
    trial_specs: list[dict[str, Any]],
    objective: tuple[str, str],
    idempotency_key: str | None,
    request_sha256: str,
    token_fingerprint: str | None,
) -> NewSweep:
    """Insert the sweep and one queued job per trial spec (each dispatching: the caller sends
    them after its commit). A key already used for the same request: that sweep, not created
    again; for another request: SweepIdempotencyConflictError."""
    values = {
        "id": uuid.uuid4().hex, "experiment": trial_specs[0]["experiment"], "request": request,
        "objective_metric": objective[0], "objective_goal": objective[1],
        "cancel_requested": False,
        "idempotency_key": idempotency_key, "request_sha256": request_sha256,
        "token_fingerprint": token_fingerprint, "created_at": utcnow(),
    }  # fmt: skip
    # A concurrent request with the same key waits for this one's commit, then finds its row.
    connection = session.connection()
    if connection.execute(_INSERT_SWEEP[connection.dialect.name], values).first() is None:
        existing = session.scalar(select(Sweep).where(Sweep.idempotency_key == idempotency_key))
        if existing is None or existing.request_sha256 != request_sha256:
            raise SweepIdempotencyConflictError(idempotency_key)
        return NewSweep(existing, trials_of(session, existing.id), created=False)
    sweep = Sweep(**values)
    trials = [
        jobs.create_job(
            session,
            spec=spec,
            experiment=spec["experiment"],
            name=spec["name"],
            dataset=spec["dataset"]["name"],
            epochs=spec["training"]["epochs"],
            sweep_id=sweep.id,
            dispatching=True,
            token_fingerprint=token_fingerprint,
        )[0]
        for spec in trial_specs
    ]
    return NewSweep(sweep, trials, created=True)


_INSERT_SWEEP = jobs.insert_unless_key_taken(Sweep.__table__)


def trials_of(session: Session, sweep_id: str) -> list[Job]:
    """The sweep's jobs in the order the space made them."""
    query = select(Job).where(Job.sweep_id == sweep_id).order_by(Job.created_at, Job.id)
    return list(session.scalars(query))


def trial_statuses(session: Session, sweep_ids: list[str]) -> dict[str, list[str]]:
    """{sweep id: its trials' statuses}, in one query."""
    found: dict[str, list[str]] = {}
    query = select(Job.sweep_id, Job.status).where(Job.sweep_id.in_(sweep_ids))
    for sweep_id, status in session.execute(query):
        found.setdefault(sweep_id, []).append(status)
    return found


def list_sweeps(session: Session, cursor: str | None, limit: int) -> pages.Page[Sweep]:
    """Newest first; ``cursor`` is the ``next_cursor`` of the previous page."""
    return pages.newest_first(session, select(Sweep), Sweep, cursor, limit)


def request_cancel(session: Session, sweep: Sweep) -> list[Job]:
    """Cancel every trial not yet finished (queued ones now, running ones at their next
    epoch); returns the trials as they are then."""
    sweep.cancel_requested = True
    for trial in trials_of(session, sweep.id):
        if trial.status not in FINAL_STATUSES:
            jobs.request_cancel(session, trial.id)
    session.flush()
    return trials_of(session, sweep.id)


def sweep_status(sweep: Sweep, trial_statuses: list[str]) -> str:
    """queued (no trial started), running, or, once every trial has ended: cancelled (when
    asked), succeeded (a trial did) or failed."""
    statuses = set(trial_statuses)
    if statuses <= set(FINAL_STATUSES):
        if sweep.cancel_requested:
            return "cancelled"
        return "succeeded" if "succeeded" in statuses else "failed"
    return "queued" if statuses <= {"queued"} else "running"


def record_parent_run(session: Session, sweep_id: str, run_id: str) -> str:
    """Record ``run_id`` as the sweep's parent run unless one is recorded already; returns
    the one recorded (another trial's, when two made one at once)."""
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.mlflow_run_id.is_(None))
        .values(mlflow_run_id=run_id)
    )
    return session.scalar(select(Sweep.mlflow_run_id).where(Sweep.id == sweep_id))


def parents_to_sync(session: Session) -> list[str]:
    """Sweeps whose parent run is open and behind: never synced, a trial ended since its last
    sync, or every trial has ended (so it is closed even if a trial's end was missed)."""
    trial = Job.sweep_id == Sweep.id
    query = select(Sweep.id).where(
        Sweep.mlflow_run_id.is_not(None),
        Sweep.mlflow_closed_at.is_(None),
        or_(
            Sweep.parent_synced_at.is_(None),
            exists().where(trial, Job.finished_at > Sweep.parent_synced_at),
            not_(exists().where(trial, Job.status.not_in(FINAL_STATUSES))),
        ),
    )
    return list(session.scalars(query.order_by(Sweep.created_at)))


def mark_parent_synced(session: Session, sweep_id: str, synced_at, closed: bool) -> None:
    values = {"parent_synced_at": synced_at, **({"mlflow_closed_at": utcnow()} if closed else {})}
    session.execute(update(Sweep).where(Sweep.id == sweep_id).values(**values))
