"""The tables: jobs, job_events, datasets, sweeps, sweep_rungs. Alembic owns the schema
(migrations/)."""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names are part of the schema: migrations refer to them by name on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every backend (SQLite stores none: we add it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"

    @property
    def failed_attempts(self) -> int:
        """Claims that did not end in a hand-back: what max_attempts limits."""
        return self.attempts - self.handoffs

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]]
    dataset: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Which API token submitted the job: a digest of it (service/security.py), never the token.
    token_fingerprint: Mapped[str | None] = mapped_column(String(16))
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    sweep_id: Mapped[str | None] = mapped_column(String(32), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    # Set for the running jobs of a worker shutting down: they checkpoint and go back to queued.
    handoff_requested: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Attempts that ended in a hand-back: they count as claims, not against max_attempts.
    handoffs: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    dispatched_at: Mapped[datetime | None]  # the outbox: NULL until the broker took the message
    epochs: Mapped[int]
    progress_epoch: Mapped[int | None]
    latest_cost: Mapped[float | None] = mapped_column(Float)
    # Metric values the worker holds for MLflow, as of its last heartbeat (NULL: none known).
    metrics_unsent: Mapped[int | None]
    checkpoint_uri: Mapped[str | None] = mapped_column(Text)
    checkpoint_epoch: Mapped[int | None]
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    # When the run got its final status; NULL on a finished job: the reconciler still owes it.
    mlflow_closed_at: Mapped[datetime | None]
    metrics: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_jobs_created_at_id", "created_at", "id"),
        Index("ix_jobs_status_lease_expires_at", "status", "lease_expires_at"),
        Index("ix_jobs_token_fingerprint_status", "token_fingerprint", "status"),
    )


class JobEvent(Base):
    """Every status change of a job, and the notable non-changes (a duplicate delivery)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(default=0)
    detail: Mapped[str | None] = mapped_column(Text)


class Dataset(Base):
    """A dataset uploaded through the API, stored below the data root."""

    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    path: Mapped[str] = mapped_column(Text)  # relative to the data root
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    n_x: Mapped[int]
    m: Mapped[int]
    m_test: Mapped[int] = mapped_column(default=0, server_default=text("0"))  # the test split
    classes: Mapped[list[str]] = mapped_column(JSON)
    image_shape: Mapped[list[int]] = mapped_column(JSON)
    size_bytes: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sweep(Base):
    """A search over job spec fields (DESIGN.md section 5): its trials are jobs with its id as
    their sweep_id. Its status is read off its trials' (store/sweeps.py)."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment: Mapped[str] = mapped_column(String(255))
    request: Mapped[dict[str, Any]]  # as validated: base, space, objective, trials, seed
    objective_metric: Mapped[str] = mapped_column(String(64))
    objective_goal: Mapped[str] = mapped_column(String(8))  # "max" or "min"
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    token_fingerprint: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The parent run of the trials' runs, made by the first trial to start (workers/sweep_runs.py).
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    parent_synced_at: Mapped[datetime | None]  # when the parent last showed the trials' state
    mlflow_closed_at: Mapped[datetime | None]  # the parent ended, every trial being over

    __table_args__ = (Index("ix_sweeps_created_at_id", "created_at", "id"),)


class SweepRung(Base):
    """A trial's arrival at a rung of its sweep's successive halving (contract/halving.py) and
    the verdict then. Kept, so that an attempt that reaches the rung again (a retry after a
    crash) gets the same verdict and is not counted twice."""

    __tablename__ = "sweep_rungs"

    sweep_id: Mapped[str] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    rung: Mapped[int] = mapped_column(primary_key=True)  # counted from 1
    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    epoch: Mapped[int]  # epochs done when judged
    value: Mapped[float | None] = mapped_column(Float)  # None: not finite
    promoted: Mapped[bool]
    # Paused at the rung, its checkpoint kept: neither promoted nor stopped yet. Such a trial
    # is queued but never claimed (store/jobs.py).
    waiting: Mapped[bool] = mapped_column(default=False, server_default=false())
    rank: Mapped[int]
    reached: Mapped[int]
    cutoff: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
