"""A sweep's trials as one table, the same for the API's sweep resource and the parent run's
trials.json: the values each trial varied, its status, its objective (final), best value and
epoch, its verdicts at the rungs of the halving, and which trial is the best."""

import math
from dataclasses import dataclass
from typing import Any

from store import rungs
from store.tables import FINAL_STATUSES, Job, Sweep, SweepRung


@dataclass
class RungRow:
    """A trial's verdict at a rung of the sweep's halving."""

    rung: int
    epoch: int  # epochs done when judged
    value: float | None  # the objective then
    state: str  # waiting, promoted or stopped (contract/halving.py); or the trial's end,
    # cancelled or failed, when it came while the trial waited here
    promoted: bool
    rank: int  # when it was judged (promoted, stopped) or so far (waiting)
    reached: int  # trials that had reached the rung then, this one included
    cutoff: float | None  # the worst value that went on then


@dataclass
class TrialRow:
    job_id: str
    status: str
    params: dict[str, Any]  # the varied fields' values, by path
    objective: float | None  # the final metric the sweep ranks by (succeeded trials)
    best_value: float | None  # the objective's best over the trial's epochs and its end
    best_epoch: int | None  # when it was measured (epochs count from 0; the end is `epochs`)
    error: str | None  # for a trial stopped at a rung: why
    rungs: list[RungRow]  # its verdicts at the rungs, in order
    mlflow_run_id: str | None


def trial_rows(
    sweep: Sweep, trials: list[Job], rungs: dict[str, list[SweepRung]], error_text
) -> list[TrialRow]:
    """One row a trial, in the order the space made them. ``rungs``: the verdicts by job id
    (store/rungs.py ``rungs_of``); ``error_text(job)``: a trial's error as it may be shown."""
    metric, paths = sweep.objective_metric, list(sweep.request["space"])
    return [
        TrialRow(
            job_id=trial.id,
            status=trial.status,
            params={path: _value_at(trial.spec, path) for path in paths},
            objective=_succeeded_metric(trial, metric),
            best_value=_succeeded_metric(trial, f"best_{metric}"),
            best_epoch=_succeeded_metric(trial, f"best_{metric}_epoch"),
            error=error_text(trial),
            rungs=[_verdict(row, trial.status) for row in rungs.get(trial.id, [])],
            mlflow_run_id=trial.mlflow_run_id,
        )
        for trial in trials
    ]


def best_of(sweep: Sweep, rows: list[TrialRow]) -> TrialRow | None:
    """The succeeded trial with the best objective (the first of a tie), if any."""
    ranked = [row for row in rows if row.objective is not None]
    if not ranked:
        return None
    pick = max if sweep.objective_goal == "max" else min
    return pick(ranked, key=lambda row: row.objective)


def _verdict(row: SweepRung, status: str) -> RungRow:
    verdict = rungs.verdict_of(row)
    state = verdict.state
    if state == "waiting" and status in FINAL_STATUSES:  # it ended before a verdict came
        state = status
    return RungRow(row.rung, row.epoch, row.value, state, verdict.promoted, row.rank,
                   row.reached, row.cutoff)  # fmt: skip


def _succeeded_metric(trial: Job, key: str) -> Any:
    if trial.status != "succeeded":
        return None
    value = (trial.metrics or {}).get(key)
    return value if value is not None and math.isfinite(value) else None  # JSON has no NaN


def _value_at(spec: dict[str, Any], path: str) -> Any:
    section, _, name = path.partition(".")
    return spec.get(section, {}).get(name)
