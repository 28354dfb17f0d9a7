"""Sweeps: submit (expand the space, validate every trial, store the sweep and its trials in
one transaction, then send each trial by task name), list, read, cancel."""

from typing import Annotated

from fastapi import Query, Request, Response
from sqlalchemy.orm import Session

from contract.halving import check_rungs
from contract.spec import JobSpec
from contract.sweep_space import SpaceError, expand_space
from contract.sweep_spec import SweepSpec
from service import submission, telemetry
from service.catalog import find_dataset
from service.deps import SessionDep, SettingsDep
from service.dispatch import send_train
from service.errors import APIError, error_responses, invalid, not_found
from service.job_rules import complete_spec, request_sha256
from service.schemas import public_text
from service.sweep_schemas import SweepList, SweepOut, sweep_out, sweep_summary
from settings import Settings
from store import jobs as job_rows
from store import rungs
from store import sweeps as sweep_rows
from store.tables import Sweep
from store.text import is_storable

router = submission.submission_router("/v1/sweeps", "sweeps")


@router.post("", status_code=202, response_model=SweepOut, responses=submission.SUBMISSION_ERRORS)
def submit_sweep(
    spec: SweepSpec,
    request: Request,
    settings: SettingsDep,
    idempotency_key: submission.IdempotencyKey = None,
) -> Response:
    fingerprint, cap = submission.submitter(request, settings)
    document = spec.model_dump(mode="json")
    with request.app.state.session_factory() as session:
        trial_specs = _trial_specs(session, spec, settings)
        if cap:
            job_rows.lock_submitter(session, fingerprint)
        try:
            made = sweep_rows.create_sweep(
                session,
                request=document,
                trial_specs=trial_specs,
                objective=(spec.objective.metric, spec.objective.goal),
                idempotency_key=idempotency_key,
                request_sha256=request_sha256(document),
                token_fingerprint=fingerprint,
            )
        except sweep_rows.SweepIdempotencyConflictError as error:
            raise submission.idempotency_conflict() from error
        if made.created and cap and job_rows.active_jobs_of(session, fingerprint) > cap:
            session.rollback()
            raise submission.over_quota(cap)
        session.commit()
        if made.created:
            telemetry.JOBS_SUBMITTED.inc(len(made.trials))
            for trial in made.trials:
                if not send_train(request.app.state.celery, trial.id):
                    submission.mark_undispatched(session, trial.id)
        answer = sweep_out(made.sweep, made.trials, lambda job: public_text(job.error, settings))
    return Response(
        answer.model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"/v1/sweeps/{made.sweep.id}"},
    )


def _trial_specs(session: Session, spec: SweepSpec, settings: Settings) -> list[dict]:
    """Every trial's spec, completed as POST /v1/jobs completes one; a 422 naming the field
    (``space.<path>`` or ``base.<path>``) for the first trial that cannot run."""
    if spec.base.get("register_as") is not None:
        raise invalid(
            "base.register_as", "a sweep registers its best trial: give register_as beside base"
        )
    try:
        trials = expand_space(spec.base, spec.space, spec.trials, spec.seed,
                              settings.max_sweep_trials)  # fmt: skip
    except SpaceError as error:
        raise invalid(error.field, error.reason) from None
    dataset = find_dataset(session, trials[0]["dataset"]["name"])
    completed = []
    for trial in trials:
        try:
            completed.append(complete_spec(JobSpec.model_validate(trial), dataset, settings))
        except APIError as error:
            field = error.field or ""
            varied = field in spec.space
            where = f"space.{field}" if varied else f"base.{field}"
            raise invalid(where, error.message.removeprefix(f"{field}: ")) from None
    _check_objective(spec, completed)
    return [trial.model_dump(mode="json") for trial in completed]


def _check_objective(spec: SweepSpec, trials: list[JobSpec]) -> None:
    """Every trial can be ranked by the objective, at every rung of the halving if any."""
    for trial in trials:
        if spec.objective.metric == "val_accuracy" and trial.training.validation_split == 0:
            raise invalid(
                "objective.metric", "val_accuracy needs training.validation_split above 0"
            )
        if spec.halving is not None:
            try:
                check_rungs(trial.training.epochs, spec.halving)
            except ValueError as error:
                raise invalid("halving.rungs", str(error)) from None


@router.get("", response_model=SweepList)
def list_sweeps(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> SweepList:
    try:
        page = sweep_rows.list_sweeps(session, cursor, limit)
    except ValueError as error:
        raise invalid("cursor", str(error)) from error
    statuses = sweep_rows.trial_statuses(session, [sweep.id for sweep in page.rows])
    summaries = [sweep_summary(sweep, statuses.get(sweep.id, [])) for sweep in page.rows]
    return SweepList(sweeps=summaries, next_cursor=page.next_cursor)


@router.get("/{sweep_id}", response_model=SweepOut, responses=error_responses(404))
def get_sweep(sweep_id: str, session: SessionDep, settings: SettingsDep) -> SweepOut:
    sweep = _sweep_or_404(session, sweep_id)
    trials = sweep_rows.trials_of(session, sweep.id)
    verdicts = rungs.rungs_of(session, sweep.id)
    return sweep_out(sweep, trials, lambda job: public_text(job.error, settings), verdicts)


@router.post(
    "/{sweep_id}/cancel",
    status_code=202,
    response_model=SweepOut,
    responses=error_responses(404),
)
def cancel_sweep(sweep_id: str, session: SessionDep, settings: SettingsDep) -> SweepOut:
    sweep = _sweep_or_404(session, sweep_id)
    trials = sweep_rows.request_cancel(session, sweep)
    session.commit()
    verdicts = rungs.rungs_of(session, sweep.id)
    return sweep_out(sweep, trials, lambda job: public_text(job.error, settings), verdicts)


def _sweep_or_404(session: Session, sweep_id: str) -> Sweep:
    sweep = session.get(Sweep, sweep_id) if is_storable(sweep_id) else None
    if sweep is None:
        raise not_found("sweep", sweep_id)
    return sweep
