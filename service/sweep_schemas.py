"""The sweep resource (DESIGN.md section 5): its status, its trials' counts, a table of its
trials (the values each varied, its objective) and its best job, built from rows."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from service.schemas import finite_or_none
from store.sweeps import sweep_status
from store.tables import JOB_STATUSES, Job, Sweep, SweepRung


class RungOut(BaseModel):
    """A trial's verdict at a rung of the sweep's halving."""

    rung: int
    epoch: int  # epochs done when judged
    value: float | None  # the objective then
    promoted: bool
    rank: int
    reached: int  # trials that had reached the rung, this one included
    cutoff: float | None  # the worst value that went on


class TrialOut(BaseModel):
    job_id: str
    status: str
    params: dict[str, Any]  # the varied fields' values, by path
    objective: float | None  # the final metric the sweep ranks by (succeeded trials)
    best_value: float | None  # the objective's best over the trial's epochs and its end
    best_epoch: int | None  # when it was measured (epochs count from 0; the end is `epochs`)
    error: str | None  # for a trial stopped at a rung: why
    rungs: list[RungOut] = []


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
    best_job: str | None
    best_value: float | None
    trials: list[TrialOut]
    request: dict[str, Any]


class SweepList(BaseModel):
    sweeps: list[SweepSummary]


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
    verdicts of the sweep's halving by job id (store/sweeps.py ``rungs_of``)."""
    rungs = rungs or {}
    paths = list(sweep.request["space"])
    rows = [
        TrialOut(
            job_id=trial.id,
            status=trial.status,
            params={path: _value_at(trial.spec, path) for path in paths},
            objective=_objective(trial, sweep.objective_metric),
            best_value=_best(trial, f"best_{sweep.objective_metric}"),
            best_epoch=_best(trial, f"best_{sweep.objective_metric}_epoch"),
            error=error_text(trial),
            rungs=[
                RungOut.model_validate(row, from_attributes=True) for row in rungs.get(trial.id, [])
            ],
        )
        for trial in trials
    ]
    ranked = [row for row in rows if row.objective is not None]
    best = None
    if ranked:
        pick = max if sweep.objective_goal == "max" else min
        best = pick(ranked, key=lambda row: row.objective)
    summary = sweep_summary(sweep, [trial.status for trial in trials])
    return SweepOut(
        **summary.model_dump(),
        best_job=best.job_id if best else None,
        best_value=best.objective if best else None,
        trials=rows,
        request=sweep.request,
    )


def _objective(trial: Job, metric: str) -> float | None:
    if trial.status != "succeeded":
        return None
    return finite_or_none((trial.metrics or {}).get(metric))


def _best(trial: Job, key: str):
    return finite_or_none((trial.metrics or {}).get(key)) if trial.status == "succeeded" else None


def _value_at(spec: dict[str, Any], path: str) -> Any:
    section, _, name = path.partition(".")
    return spec.get(section, {}).get(name)
