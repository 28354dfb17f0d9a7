"""Asynchronous successive halving (ASHA, Li et al. 2018), as a sweep's trials meet it.

A trial is judged at each rung, an epoch count of the sweep's ``halving.rungs``; its own
``training.epochs`` is the last rung, where it simply ends. At a rung it goes on (is promoted)
if it is in the top 1/eta of the trials that reached the rung so far, itself included, and stops
otherwise. Judging on arrival never waits for slower trials: the first to reach a rung always
goes on, and the cutoff tightens as more arrive.
"""

import itertools
import math
from dataclasses import dataclass

from pydantic import Field, field_validator

from contract.spec import Strict

MAX_RUNGS = 10


class Halving(Strict):
    eta: int = Field(3, ge=2, le=10, description="Reduction factor: 1 in eta goes on at a rung.")
    rungs: list[int] = Field(
        min_length=1,
        max_length=MAX_RUNGS,
        description="The epochs at which each trial is judged, increasing; its "
        "training.epochs is the last rung.",
    )

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, rungs: list[int]) -> list[int]:
        if rungs[0] < 1 or any(b <= a for a, b in itertools.pairwise(rungs)):
            raise ValueError("rungs must be epochs from 1 up, each above the one before")
        return rungs


def check_rungs(epochs: int, halving: Halving) -> None:
    """ValueError unless every rung comes before the trial's last epoch."""
    if halving.rungs[-1] >= epochs:
        raise ValueError(
            f"rung {halving.rungs[-1]} is not before training.epochs {epochs}, the last rung"
        )


@dataclass(frozen=True)
class Verdict:
    """A trial's judgement at a rung: promoted or stopped, with what a reader needs to see why."""

    rung: int  # counted from 1
    epoch: int  # epochs done when judged
    value: float  # the objective's value then (NaN when it was not finite)
    promoted: bool
    rank: int  # 1 is the best of those that reached the rung so far
    reached: int  # how many had, itself included
    cutoff: float  # the worst value that still goes on

    def reason(self, metric: str) -> str:
        state = "promoted" if self.promoted else "stopped"
        return (
            f"{state} at rung {self.rung} (epoch {self.epoch}): {metric} {self.value:.4g}, "
            f"cutoff {self.cutoff:.4g}, rank {self.rank} of {self.reached}"
        )


def judge(
    value: float, earlier: list[float], eta: int, goal: str, rung: int, epoch: int
) -> Verdict:
    """Rank ``value`` among the ``earlier`` values at this rung (goal "max" or "min"); the top
    max(1, n // eta) of the n go on. A non-finite value ranks last; a tie goes to the newcomer."""
    sign = 1.0 if goal == "max" else -1.0

    def score(v: float) -> float:
        return sign * v if math.isfinite(v) else -math.inf

    ranked = sorted([score(v) for v in earlier] + [score(value)], reverse=True)
    reached = len(ranked)
    keep = max(1, reached // eta)
    rank = 1 + sum(1 for v in earlier if score(v) > score(value))
    cutoff = sign * ranked[keep - 1]
    return Verdict(rung, epoch, value, rank <= keep, rank, reached, cutoff)
