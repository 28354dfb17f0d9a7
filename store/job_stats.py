"""What the jobs table says about the queue as a whole, for /metrics: jobs by state, the queue's
waits and the jobs' durations as histogram buckets, retries, requeues and unsent metric values.
Each is one aggregate query: nothing reads rows one by one."""

from dataclasses import dataclass

from sqlalchemy import Float, case, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from store.jobs import WAITING_AT_RUNG
from store.tables import JOB_STATUSES, Job, JobEvent


@dataclass(frozen=True)
class Durations:
    """A histogram's cumulative bucket counts (one per upper bound), count and sum."""

    buckets: list[tuple[float, int]]
    count: int
    total: float


@dataclass(frozen=True)
class JobStats:
    by_status: dict[str, int]
    waiting_at_rung: int  # queued trials paused at a sweep's rung, not claimable until promoted
    queue_wait: Durations  # created → started, of every job that started
    duration: Durations  # started → finished, of every job that started and finished
    retried: int  # jobs claimed more than once
    attempts: int  # claims of every job, in all
    handoffs: int  # attempts handed back: by a worker shutting down, or paused at a rung
    requeues: int  # running → queued: hand-backs and expired leases
    metrics_unsent: int  # metric values the running jobs' workers hold for MLflow


def seconds_between(start, end, dialect: str) -> ColumnElement[float]:
    """``end - start`` in seconds, in the dialect's SQL."""
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0  # SQLite's timestamps: text


def durations(session: Session, seconds: ColumnElement, bounds: tuple[float, ...]) -> Durations:
    """The histogram of ``seconds`` (NULL where a job has no such duration) over ``bounds``."""
    bucket_counts = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in bounds]
    row = session.execute(
        select(*bucket_counts, func.count(seconds), func.sum(cast(seconds, Float)))
    ).one()
    counts = [int(value or 0) for value in row[: len(bounds)]]
    return Durations(list(zip(bounds, counts, strict=True)), int(row[-2]), float(row[-1] or 0))


def job_stats(session: Session, bounds: tuple[float, ...]) -> JobStats:
    dialect = session.get_bind().dialect.name
    counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    totals = session.execute(
        select(
            func.count().filter(Job.attempts > 1),
            func.coalesce(func.sum(Job.attempts), 0),
            func.coalesce(func.sum(Job.handoffs), 0),
        )
    ).one()
    requeues = session.scalar(
        select(func.count())
        .select_from(JobEvent)
        .where(JobEvent.from_status == "running", JobEvent.to_status == "queued")
    )
    waiting = session.scalar(
        select(func.count()).select_from(Job).where(Job.status == "queued", WAITING_AT_RUNG)
    )
    unsent = session.scalar(
        select(func.coalesce(func.sum(Job.metrics_unsent), 0)).where(Job.status == "running")
    )
    waited = seconds_between(Job.created_at, Job.started_at, dialect)
    lasted = seconds_between(Job.started_at, Job.finished_at, dialect)
    return JobStats(
        by_status={status: int(counts.get(status, 0)) for status in JOB_STATUSES},
        waiting_at_rung=int(waiting),
        queue_wait=durations(session, waited, bounds),
        duration=durations(session, lasted, bounds),
        retried=int(totals[0]),
        attempts=int(totals[1]),
        handoffs=int(totals[2]),
        requeues=int(requeues),
        metrics_unsent=int(unsent),
    )
