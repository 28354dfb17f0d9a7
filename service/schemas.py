"""The resources the API answers with (DESIGN.md section 5), built from rows."""

import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from service.catalog import DatasetInfo
from service.redaction import public_url, redact
from settings import Settings
from store.tables import Job, JobEvent

FINAL_METRICS = ("cost", "train_accuracy", "val_accuracy")


class JobProgress(BaseModel):
    epoch: int | None
    epochs: int
    cost: float | None


class JobEventOut(BaseModel):
    at: datetime
    from_status: str | None
    to_status: str
    attempt: int
    detail: str | None


class JobOut(BaseModel):
    id: str
    experiment: str
    name: str | None
    status: str
    attempts: int
    progress: JobProgress
    metrics: dict[str, float | None]
    spec: dict[str, Any]
    sweep_id: str | None
    mlflow_run_id: str | None
    mlflow_url: str | None
    mlflow_experiment_url: str | None
    error: str | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobDetailOut(JobOut):
    events: list[JobEventOut]


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


class MetricPoint(BaseModel):
    step: int
    value: float | None


class JobMetricsOut(BaseModel):
    job_id: str
    metrics: dict[str, list[MetricPoint]]


class DatasetOut(BaseModel):
    name: str
    kind: str
    n_x: int
    m: int
    m_test: int
    classes: list[str]
    image_shape: list[int]
    sha256: str
    size_bytes: int | None
    created_at: datetime | None


class DatasetList(BaseModel):
    datasets: list[DatasetOut]


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity; a diverged cost is reported as null."""
    return value if value is not None and math.isfinite(value) else None


# MLflow 3's UI shows an experiment in its GenAI mode (traces, "Evaluations") unless the
# hash route's query asks for the machine-learning one (runs, charts, artifacts); the experiment
# tag is not enough for its newer versions (WorkflowTypeContext in mlflow/server/js).
MLFLOW_ML_MODE = "workflowType=machine_learning"


def mlflow_ui_link(route: str, settings: Settings) -> str | None:
    """``route`` of the MLflow UI in its machine-learning mode (None for a local tracking
    store); no credentials or query string of the configured URL."""
    base = settings.mlflow_ui_base
    if not base.startswith("http"):
        return None
    return f"{public_url(base).rstrip('/')}/#/{route}?{MLFLOW_ML_MODE}"


def mlflow_url(job: Job, settings: Settings) -> str | None:
    """The job's run in the MLflow UI, if there is one."""
    if not (job.mlflow_experiment_id and job.mlflow_run_id):
        return None
    route = f"experiments/{job.mlflow_experiment_id}/runs/{job.mlflow_run_id}"
    return mlflow_ui_link(route, settings)


def mlflow_experiment_url(job: Job, settings: Settings) -> str | None:
    """The runs of the job's experiment in the MLflow UI (to compare them), if it has one."""
    if not job.mlflow_experiment_id:
        return None
    return mlflow_ui_link(f"experiments/{job.mlflow_experiment_id}/runs", settings)


def job_out(job: Job, settings: Settings) -> JobOut:
    final = job.metrics or {}
    return JobOut(
        id=job.id,
        experiment=job.experiment,
        name=job.name,
        status=job.status,
        attempts=job.attempts,
        progress=JobProgress(
            epoch=job.progress_epoch, epochs=job.epochs, cost=finite_or_none(job.latest_cost)
        ),
        metrics={key: finite_or_none(final.get(key)) for key in FINAL_METRICS},
        spec=job.spec,
        sweep_id=job.sweep_id,
        mlflow_run_id=job.mlflow_run_id,
        mlflow_url=mlflow_url(job, settings),
        mlflow_experiment_url=mlflow_experiment_url(job, settings),
        error=public_text(job.error, settings),
        cancel_requested=job.cancel_requested,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def public_text(text: str | None, settings: Settings) -> str | None:
    """A worker's error as every token holder may read it: no server path, no secret."""
    return None if text is None else redact(text, settings)


def _event_out(event: JobEvent, settings: Settings) -> JobEventOut:
    out = JobEventOut.model_validate(event, from_attributes=True)
    return out.model_copy(update={"detail": public_text(out.detail, settings)})


def job_detail_out(job: Job, events: list[JobEvent], settings: Settings) -> JobDetailOut:
    return JobDetailOut(
        **job_out(job, settings).model_dump(),
        events=[_event_out(event, settings) for event in events],
    )


def dataset_out(info: DatasetInfo) -> DatasetOut:
    return DatasetOut.model_validate(info, from_attributes=True)  # tuples become lists
