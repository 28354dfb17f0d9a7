"""Queries on jobs: create (idempotent), list, claim with a lease, progress, finish, cancel.

Every status change writes a job_events row in the same transaction. Writes are short: no
transaction is held open across training or network calls.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store import pages
from store.tables import FINAL_STATUSES, Job, JobEvent, SweepRung, utcnow

# A trial waiting at a rung of its sweep's halving (store/rungs.py): queued, but neither
# claimed nor sent until it is promoted.
WAITING_AT_RUNG = exists().where(SweepRung.job_id == Job.id, SweepRung.waiting)

# The detail of the event that says a run's metric curve is incomplete (store/recovery.py reads
# it back to tag the run when the reconciler closes it).
METRICS_INCOMPLETE = "metrics incomplete: "


def undelivered_values(values: int) -> str:
    """How the job's event and its run's gradq.metrics_incomplete tag say it."""
    return f"{values} values not delivered to MLflow"


def metrics_incomplete(values: int) -> str:
    """The event detail for ``values`` metric values that never reached MLflow."""
    return METRICS_INCOMPLETE + undelivered_values(values)


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with another request body."""


def record_event(
    session: Session, job: Job, to_status: str, from_status: str | None, detail: str | None = None
) -> None:
    session.add(
        JobEvent(
            job_id=job.id,
            from_status=from_status,
            to_status=to_status,
            attempt=job.attempts,
            detail=detail,
        )
    )


def create_job(
    session: Session,
    *,
    spec: dict[str, Any],
    experiment: str,
    name: str | None,
    dataset: str,
    epochs: int,
    idempotency_key: str | None = None,
    request_sha256: str | None = None,
    sweep_id: str | None = None,
    max_attempts: int = 3,
    dispatching: bool = False,
    token_fingerprint: str | None = None,
) -> tuple[Job, bool]:
    """Insert a queued job (committed by the caller's transaction) and its first event.

    dispatching: the caller sends the job's message right after the commit, so dispatched_at
    is set now, saving a second transaction per submission; a failed send clears it
    (mark_undispatched). A crash between the commit and the send leaves a queued row whose
    message never went: the reconciler re-sends stale queued rows whatever this says.
    With an idempotency key already used for the same request: (that job, False); for another
    request: IdempotencyConflictError. Returns (job, created); a created job is a detached
    ``Job`` holding the inserted values.

    Two Core statements, no ORM flush: ``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id``, then the event. A concurrent request with the same key waits for this
    one's commit and then finds its row (the submission path's cost: bench/service.py).
    """
    now = utcnow()
    values = {
        "id": uuid.uuid4().hex, "experiment": experiment, "name": name, "status": "queued",
        "attempts": 0, "max_attempts": max_attempts, "handoffs": 0, "spec": spec,
        "dataset": dataset, "epochs": epochs, "idempotency_key": idempotency_key,
        "request_sha256": request_sha256, "sweep_id": sweep_id, "cancel_requested": False,
        "handoff_requested": False, "dispatched_at": now if dispatching else None,
        "created_at": now, "updated_at": now, "token_fingerprint": token_fingerprint,
    }  # fmt: skip
    # Core statements on the session's connection: the ORM's unit of work and its per-statement
    # compilation were half of a submission's CPU time (py-spy, bench/service.py).
    connection = session.connection()
    inserted = connection.execute(_INSERT_JOB[connection.dialect.name], values).first()
    if inserted is None:  # the key was taken, by an earlier request or a concurrent one
        existing = _by_idempotency_key(session, idempotency_key, request_sha256)
        if existing is None:  # pragma: no cover - a unique key that nobody holds
            raise RuntimeError(f"idempotency key {idempotency_key!r} conflicted, yet no job has it")
        return existing, False
    event = {"job_id": values["id"], "from_status": None, "to_status": "queued", "attempt": 0,
             "detail": "accepted", "at": now}  # fmt: skip
    connection.execute(_INSERT_EVENT, event)
    return Job(**values), True


def insert_unless_key_taken(table) -> dict:
    """``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`` into ``table``, by
    dialect name (a NULL key never conflicts; no savepoint, which SQLite's driver commits)."""
    return {
        name: dialect_insert(table)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id)
        for name, dialect_insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
    }


_INSERT_JOB = insert_unless_key_taken(Job.__table__)
_INSERT_EVENT = insert(JobEvent.__table__)


def _by_idempotency_key(session: Session, key: str | None, request_sha256: str | None):
    job = session.scalar(select(Job).where(Job.idempotency_key == key))
    if job is not None and job.request_sha256 != request_sha256:
        raise IdempotencyConflictError(key)
    return job


ACTIVE_STATUSES = ("queued", "running")


def lock_submitter(session: Session, token_fingerprint: str) -> None:
    """Serialize the submissions of one token until the transaction ends, so that counting its
    active jobs and inserting one cannot race past its cap. PostgreSQL: a transaction-scoped
    advisory lock keyed by the fingerprint. SQLite needs none: its writers are serialized
    already, and the count follows the insert inside the write transaction."""
    if session.get_bind().dialect.name == "postgresql":
        key = int(token_fingerprint, 16) % 2**64
        key -= 2**64 if key >= 2**63 else 0  # a signed bigint
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def active_jobs_of(session: Session, token_fingerprint: str) -> int:
    """Jobs submitted with this token that are queued or running."""
    return session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.token_fingerprint == token_fingerprint, Job.status.in_(ACTIVE_STATUSES))
    )


def mark_undispatched(session: Session, job_id: str) -> None:
    """The send after the commit failed: the outbox holds this job again."""
    session.execute(update(Job).where(Job.id == job_id).values(dispatched_at=None))


def list_jobs(
    session: Session,
    *,
    status: str | None = None,
    experiment: str | None = None,
    sweep_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> pages.Page[Job]:
    """Newest first; ``cursor`` is the ``next_cursor`` of the previous page."""
    query = select(Job)
    if status:
        query = query.where(Job.status == status)
    if experiment:
        query = query.where(Job.experiment == experiment)
    if sweep_id:
        query = query.where(Job.sweep_id == sweep_id)
    return pages.newest_first(session, query, Job, cursor, limit)


def claim(session: Session, job_id: str, owner: str, lease_seconds: float) -> Job | None:
    """Atomically take the job for ``owner``: a queued job, or a running one whose lease
    expired. Returns the claimed job (attempts + 1), or None when someone else holds it or it
    is finished or cancelled."""
    now = utcnow()
    expired_with_attempts_left = and_(
        Job.status == "running",
        Job.lease_expires_at < now,
        Job.attempts - Job.handoffs < Job.max_attempts,
    )
    claimable = or_(Job.status == "queued", expired_with_attempts_left)
    # A trial waiting at a rung of its sweep is queued, but resumes only once promoted.
    claimable = and_(claimable, ~WAITING_AT_RUNG)
    previous = session.scalar(select(Job.status).where(Job.id == job_id))
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, claimable, Job.cancel_requested.is_(False))
        .values(
            status="running",
            attempts=Job.attempts + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            heartbeat_at=now,
            handoff_requested=False,
            started_at=func.coalesce(Job.started_at, now),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    job = session.get(Job, job_id, populate_existing=True)
    record_event(session, job, "running", previous, f"claimed by {owner}")
    return job


@dataclass(frozen=True)
class Heartbeat:
    still_owner: bool
    cancel_requested: bool
    handoff_requested: bool = False


def heartbeat(
    session: Session | Connection,
    job_id: str,
    owner: str,
    lease_seconds: float,
    epoch: int | None,
    cost: float | None,
    metrics_unsent: int | None = None,
) -> Heartbeat:
    """Extend the lease and record progress (``epoch`` None: leave it as it is) and the metric
    values the worker holds for MLflow; says whether a cancel or a handoff was asked for. On a
    session, or on a connection in autocommit (as the worker's heartbeat does): it is a single
    statement."""
    now = utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    values = {"job_id": job_id, "owner": owner, "now": now, "expires": expires,
              "unsent": metrics_unsent}  # fmt: skip
    if epoch is not None:
        values.update(epoch=epoch, cost=cost)
    statement = _BEAT if epoch is None else _BEAT_WITH_PROGRESS
    flags = session.execute(statement, values).one_or_none()
    if flags is None:  # not this owner's, or not running: the flags are no longer its concern
        return Heartbeat(still_owner=False, cancel_requested=False)
    return Heartbeat(True, bool(flags.cancel_requested), bool(flags.handoff_requested))


# One statement, one round trip, built once: a worker beats every progress_seconds from a
# thread of the training process, holding the GIL for every line of Python it runs
# (workers/heartbeat.py says what a beat cost).
_BEAT = (
    update(Job)
    .where(
        Job.id == bindparam("job_id"),
        Job.lease_owner == bindparam("owner"),
        Job.status == "running",
    )
    .values(
        heartbeat_at=bindparam("now"),
        lease_expires_at=bindparam("expires"),
        metrics_unsent=bindparam("unsent"),
    )
    .returning(Job.cancel_requested, Job.handoff_requested)
    .execution_options(synchronize_session=False)
)
_BEAT_WITH_PROGRESS = _BEAT.values(progress_epoch=bindparam("epoch"), latest_cost=bindparam("cost"))


def finish(
    session: Session,
    job_id: str,
    owner: str,
    status: str,
    *,
    metrics: dict[str, Any] | None = None,
    error: str | None = None,
    mlflow_closed: bool = False,
    metrics_undelivered: int = 0,
) -> bool:
    """End a running job held by ``owner`` as succeeded, failed or cancelled; mlflow_closed:
    its MLflow run already has its final status (if not, the reconciler closes it);
    metrics_undelivered: metric values that never reached MLflow, said by an event."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"not a final status: {status}")
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.status != "running" or job.lease_owner != owner:
        return False
    job.status, job.finished_at = status, utcnow()
    job.metrics, job.error = metrics, error
    job.lease_owner = job.lease_expires_at = None
    job.handoff_requested = False
    job.mlflow_closed_at = utcnow() if mlflow_closed else None
    record_event(session, job, status, "running", error)
    if metrics_undelivered:
        record_event(session, job, status, status, metrics_incomplete(metrics_undelivered))
    return True


def release(
    session: Session, job_id: str, owner: str, detail: str, metrics_undelivered: int = 0
) -> str | None:
    """Hand a running job held by ``owner`` back to the queue (its worker is shutting down):
    queued, no lease, and undispatched: the reconciler's next pass sends its message, by when
    the worker that handed it back has stopped taking messages (a message sent at once went
    back to that same worker, still draining, in `make up`). The attempt is kept; the next
    one resumes from the checkpoint. A job whose cancel
    was asked for meanwhile ends cancelled instead (it never resumes). Returns the new
    status, or None if ``owner`` no longer holds the job. A hand-back uses up no attempt.
    metrics_undelivered: metric values that did not reach MLflow, which the next attempt
    sends again; said by an event only when there is none (the job ends cancelled)."""
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.status != "running" or job.lease_owner != owner:
        return None
    job.lease_owner = job.lease_expires_at = None
    job.handoff_requested = False
    if job.cancel_requested:
        job.status, job.finished_at = "cancelled", utcnow()
        record_event(session, job, "cancelled", "running", f"cancel requested; {detail}")
        if metrics_undelivered:
            record_event(
                session, job, "cancelled", "cancelled", metrics_incomplete(metrics_undelivered)
            )
    else:
        job.status, job.dispatched_at = "queued", None
        job.handoffs += 1
        record_event(session, job, "queued", "running", detail)
    return job.status


def record_checkpoint(
    session: Session, job_id: str, owner: str, uri: str, epoch: int, sha256: str
) -> bool:
    """The job's newest checkpoint, recorded only while ``owner`` still holds the job."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
        .values(checkpoint_uri=uri, checkpoint_epoch=epoch, checkpoint_sha256=sha256)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def request_handoff(session: Session, worker_hostname: str) -> int:
    """Ask every running job of the worker ``worker_hostname`` (its owners are
    ``hostname/pid``) to checkpoint and go back to the queue. Returns how many were asked."""
    result = session.execute(
        update(Job)
        .where(
            Job.status == "running",
            Job.lease_owner.startswith(f"{worker_hostname}/", autoescape=True),
        )
        .values(handoff_requested=True)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def request_cancel(session: Session, job_id: str) -> Job | None:
    """Cancel a queued job now; ask a running one to stop at its next epoch. Returns the job
    (unchanged if already finished), or None if there is no such job."""
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.status in FINAL_STATUSES:
        return job
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
        record_event(session, job, "cancelled", "queued", "cancelled before it started")
    else:
        job.cancel_requested = True
    return job


def set_mlflow_run(session: Session, job_id: str, experiment_id: str, run_id: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(mlflow_experiment_id=experiment_id, mlflow_run_id=run_id)
    )


def events_of(session: Session, job_id: str) -> list[JobEvent]:
    query = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    return list(session.scalars(query))
