"""The reconciler's queries: jobs whose worker was lost, messages the broker lost, MLflow runs
left open. Each change is a conditional UPDATE of one row, so two reconcilers (or a reconciler
and a worker) racing for the same row change it once.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from store.jobs import METRICS_INCOMPLETE, WAITING_AT_RUNG, record_event
from store.tables import FINAL_STATUSES, Job, JobEvent, utcnow

BATCH = 500  # rows per query: a long backlog is worked through over several passes


@dataclass(frozen=True)
class Expired:
    """A running job whose lease ran out, and what the reconciler made of it."""

    job_id: str
    status: str  # queued (to be sent again), failed or cancelled
    mlflow_run_id: str | None


def expire_leases(session: Session, now: datetime | None = None) -> list[Expired]:
    """Running jobs whose lease expired (their worker is lost): back to queued with the attempt
    kept, or failed once ``max_attempts`` claims were used, or cancelled if that was asked."""
    now = now or utcnow()
    query = (
        select(Job.id)
        .where(Job.status == "running", Job.lease_expires_at < now)
        .order_by(Job.lease_expires_at)
        .limit(BATCH)
    )
    found = []
    for job_id in session.scalars(query).all():
        job = session.get(Job, job_id, populate_existing=True)
        status, detail, error = _after_lost_worker(job)
        changed = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == "running",
                Job.lease_expires_at < now,
                # a cancel that lands meanwhile is left to the next pass, not overwritten
                Job.cancel_requested.is_(job.cancel_requested),
            )
            .values(
                status=status,
                lease_owner=None,
                lease_expires_at=None,
                handoff_requested=False,
                error=error,
                dispatched_at=now if status == "queued" else Job.dispatched_at,
                finished_at=None if status == "queued" else now,
            )
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount == 1:  # nobody renewed or took it meanwhile
            record_event(session, job, status, "running", detail)
            found.append(Expired(job_id, status, job.mlflow_run_id))
    return found


def _after_lost_worker(job: Job) -> tuple[str, str, str | None]:
    """(new status, event detail, error) of a running job whose worker stopped answering."""
    lost = f"lease expired: worker {job.lease_owner} lost"
    if job.cancel_requested:
        return "cancelled", f"{lost}; cancel was requested", None
    if job.failed_attempts >= job.max_attempts:
        error = f"max attempts ({job.max_attempts}) exhausted: worker lost"
        return "failed", f"{lost}; {error}", error
    left = f"{job.failed_attempts} of {job.max_attempts} attempts used"
    return "queued", f"{lost}; queued again ({left})", None


def count_queued(session: Session) -> int:
    """Queued jobs with a message due: not the trials waiting at a rung."""
    queued = and_(Job.status == "queued", ~WAITING_AT_RUNG)
    return session.scalar(select(func.count()).select_from(Job).where(queued))


def to_dispatch(
    session: Session,
    redispatch_seconds: float,
    now: datetime | None = None,
    *,
    include_stale: bool = True,
) -> list[str]:
    """Queued jobs whose message was never sent (dispatched_at NULL: the send failed) and,
    with ``include_stale``, those that went unclaimed for ``redispatch_seconds`` (a broker
    that lost them). Marks them dispatched now and returns their ids; the caller sends the
    messages after the commit. A message that was only slow makes a duplicate, which the
    claim turns into a no-op."""
    now = now or utcnow()
    stale = now - timedelta(seconds=redispatch_seconds)
    due = or_(Job.dispatched_at.is_(None), Job.dispatched_at < stale)
    if not include_stale:
        due = Job.dispatched_at.is_(None)
    query = (
        select(Job.id)
        .where(
            Job.status == "queued",
            due,
            Job.cancel_requested.is_(False),
            ~WAITING_AT_RUNG,  # sent when promoted
        )
        .order_by(Job.created_at)
        .limit(BATCH)
    )
    sent = []
    for job_id in session.scalars(query).all():
        changed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued", due)
            .values(dispatched_at=now)
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount == 1:
            sent.append(job_id)
    return sent


@dataclass(frozen=True)
class OpenRun:
    job_id: str
    mlflow_run_id: str
    status: str  # the job's final status
    error: str | None
    metrics_incomplete: str | None = None  # the event's detail, if the curve is incomplete


def runs_to_close(session: Session) -> list[OpenRun]:
    """Finished jobs whose MLflow run has not been given its final status yet."""
    incomplete = (
        select(JobEvent.detail)
        .where(
            JobEvent.job_id == Job.id,
            JobEvent.detail.startswith(METRICS_INCOMPLETE, autoescape=True),
        )
        .order_by(JobEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(Job.id, Job.mlflow_run_id, Job.status, Job.error, incomplete)
        .where(
            Job.status.in_(FINAL_STATUSES),
            Job.mlflow_run_id.is_not(None),
            Job.mlflow_closed_at.is_(None),
        )
        .order_by(Job.finished_at, Job.id)
        .limit(BATCH)
    )
    return [OpenRun(*row) for row in session.execute(query)]


def mark_mlflow_closed(session: Session, job_id: str) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(mlflow_closed_at=utcnow()))
