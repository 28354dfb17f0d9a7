"""The sweep resource (DESIGN.md section 5): its status, its trials' counts, a table of its
trials (the values each varied, its objective) and its best job, built from rows."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from store.sweep_table import TrialRow, best_of, trial_rows
from store.sweeps import sweep_status
from store.tables import JOB_STATUSES, Job, Sweep, SweepRung


class SweepSummary(BaseModel):
    id: str
    experiment: str
    status: str
    objective: dict[str, str]
    trial_count: int
    counts: dict[str, int]
    cancel_requested: bool
    created_at: datetime


class SweepOut(SweepSummary):
    mlflow_run_id: str | None  # the parent run, once a trial has started
    best_job: str | None
    best_value: float | None
    trials: list[TrialRow]  # store/sweep_table.py
    request: dict[str, Any]


class SweepList(BaseModel):
    sweeps: list[SweepSummary]
    next_cursor: str | None  # for the next page: GET /v1/sweeps?cursor=...


def sweep_summary(sweep: Sweep, statuses: list[str]) -> SweepSummary:
    counts = dict.fromkeys(JOB_STATUSES, 0)
    for status in statuses:
        counts[status] += 1
    return SweepSummary(
        id=sweep.id,
        experiment=sweep.experiment,
        status=sweep_status(sweep, statuses),
        objective={"metric": sweep.objective_metric, "goal": sweep.objective_goal},
        trial_count=len(statuses),
        counts=counts,
        cancel_requested=sweep.cancel_requested,
        created_at=sweep.created_at,
    )


def sweep_out(
    sweep: Sweep,
    trials: list[Job],
    error_text,
    rungs: dict[str, list[SweepRung]] | None = None,
) -> SweepOut:
    """``error_text(job)``: a trial's error as the API may show it (redacted); ``rungs``: the
    verdicts of the sweep's halving by job id (store/rungs.py ``rungs_of``)."""
    rows = trial_rows(sweep, trials, rungs or {}, error_text)
    best = best_of(sweep, rows)
    summary = sweep_summary(sweep, [trial.status for trial in trials])
    return SweepOut(
        **summary.model_dump(),
        best_job=best.job_id if best else None,
        best_value=best.objective if best else None,
        trials=rows,
        request=sweep.request,
        mlflow_run_id=sweep.mlflow_run_id,
    )
