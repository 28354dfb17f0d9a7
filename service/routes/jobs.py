"""Jobs: submit (validate, store, commit, then send by task name), list, read, cancel."""

import logging
from typing import Annotated, Literal

from fastapi import Query, Request, Response
from sqlalchemy.orm import Session

from contract.spec import JobSpec
from service import telemetry
from service.catalog import find_dataset
from service.deps import SessionDep, SettingsDep
from service.dispatch import send_train
from service.errors import APIError, ErrorOut, error_responses, invalid, not_found
from service.job_rules import complete_spec, request_sha256
from service.mlflow_metrics import METRIC_KEYS, MlflowUnavailableError, metric_histories
from service.redaction import redact
from service.schemas import (
    JobDetailOut,
    JobMetricsOut,
    JobOut,
    JobPage,
    job_detail_out,
    job_out,
)
from service.submission import (
    SUBMISSION_ERRORS,
    IdempotencyKey,
    idempotency_conflict,
    mark_undispatched,
    over_quota,
    submission_router,
    submitter,
)
from store import jobs as job_rows
from store.tables import FINAL_STATUSES, JOB_STATUSES, Job
from store.text import SqlText, is_storable

log = logging.getLogger("gradq.service")
router = submission_router("/v1/jobs", "jobs")


@router.post("", status_code=202, response_model=JobOut, responses=SUBMISSION_ERRORS)
def submit_job(
    spec: JobSpec,
    request: Request,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    # The hot path (bench/service.py): the session is opened here rather than by SessionDep,
    # whose sync generator costs two more trips through the thread pool; the answer is
    # serialized once, by pydantic-core, rather than dumped, validated and encoded again.
    fingerprint, cap = submitter(request, settings)
    with request.app.state.session_factory() as session:
        filled = complete_spec(spec, find_dataset(session, spec.dataset.name), settings)
        document = filled.model_dump(mode="json")
        if cap:
            job_rows.lock_submitter(session, fingerprint)
        try:
            job, created = job_rows.create_job(
                session,
                spec=document,
                experiment=filled.experiment,
                name=filled.name,
                dataset=filled.dataset.name,
                epochs=filled.training.epochs,
                idempotency_key=idempotency_key,
                request_sha256=request_sha256(document),
                dispatching=True,
                token_fingerprint=fingerprint,
            )
        except job_rows.IdempotencyConflictError as error:
            raise idempotency_conflict() from error
        # Counted after the insert, in the same transaction: a replay (created False) is
        # answered its job whatever the count.
        if created and cap and job_rows.active_jobs_of(session, fingerprint) > cap:
            session.rollback()
            raise over_quota(cap)
        session.commit()
        if created:
            telemetry.JOBS_SUBMITTED.inc()
            if not send_train(request.app.state.celery, job.id):
                mark_undispatched(session, job.id)
    return Response(
        job_out(job, settings).model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    settings: SettingsDep,
    status: Literal[JOB_STATUSES] | None = None,
    experiment: Annotated[SqlText | None, Query(max_length=255)] = None,
    sweep_id: Annotated[SqlText | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> JobPage:
    try:
        page = job_rows.list_jobs(
            session,
            status=status,
            experiment=experiment,
            sweep_id=sweep_id,
            cursor=cursor,
            limit=limit,
        )
    except ValueError as error:
        raise invalid("cursor", str(error)) from error
    return JobPage(jobs=[job_out(job, settings) for job in page.rows], next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobDetailOut, responses=error_responses(404))
def get_job(job_id: str, session: SessionDep, settings: SettingsDep) -> JobDetailOut:
    job = _job_or_404(session, job_id)
    return job_detail_out(job, job_rows.events_of(session, job_id), settings)


@router.get(
    "/{job_id}/metrics",
    response_model=JobMetricsOut,
    responses=error_responses(404)
    | {503: {"model": ErrorOut, "description": "The database or MLflow is unavailable."}},
)
def get_job_metrics(job_id: str, session: SessionDep, settings: SettingsDep) -> JobMetricsOut:
    job = _job_or_404(session, job_id)
    session.commit()  # no connection held while MLflow answers
    if job.mlflow_run_id is None:
        histories = {key: [] for key in METRIC_KEYS}
    else:
        try:
            histories = metric_histories(settings.mlflow_tracking_uri, job.mlflow_run_id)
        except MlflowUnavailableError as error:
            message = f"MLflow did not answer: {redact(str(error), settings)}"
            raise APIError(503, "mlflow_unavailable", message) from error
    return JobMetricsOut(job_id=job.id, metrics=histories)


@router.post(
    "/{job_id}/cancel", status_code=202, response_model=JobOut, responses=error_responses(404, 409)
)
def cancel_job(job_id: str, session: SessionDep, settings: SettingsDep) -> JobOut:
    current = _job_or_404(session, job_id)
    if current.status in FINAL_STATUSES:
        raise _already_finished(job_id, current.status)
    job = job_rows.request_cancel(session, job_id)  # locks the row and reads it again
    if job.status in ("succeeded", "failed"):  # it finished in between
        raise _already_finished(job_id, job.status)
    session.commit()
    return job_out(job, settings)


def _already_finished(job_id: str, job_status: str) -> APIError:
    return APIError(409, "already_finished", f"job {job_id} already {job_status}")


def _job_or_404(session: Session, job_id: str) -> Job:
    # An id no job can have is not looked up (PostgreSQL refuses NUL characters).
    job = session.get(Job, job_id) if is_storable(job_id) else None
    if job is None:
        raise not_found("job", job_id)
    return job
