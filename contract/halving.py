"""Asynchronous successive halving (ASHA, Li et al. 2018), as a sweep's trials meet it.

A trial is judged at each rung but the last: after ``epochs / eta**(rungs - 1)`` epochs, then
``eta`` times as many, and so on up to its full epochs. It goes on (is promoted) if it is in the
top 1/eta of the trials that reached the rung so far, itself included, and stops otherwise.
Judging on arrival never waits for slower trials: the first to reach a rung always goes on, and
the cutoff tightens as more arrive.
"""

import math
from dataclasses import dataclass

from pydantic import Field

from contract.spec import Strict


class Halving(Strict):
    eta: int = Field(3, ge=2, le=10, description="Reduction factor: 1 in eta goes on at a rung.")
    rungs: int = Field(
        4, ge=2, le=8, description="Rungs of epochs, the last a trial's full training.epochs."
    )


def rung_epochs(epochs: int, halving: Halving) -> list[int]:
    """The epochs done at each rung, the last being ``epochs`` itself: for 81 epochs, eta 3
    and 4 rungs, [3, 9, 27, 81]. ValueError when the first rung would have no epoch."""
    first = epochs // halving.eta ** (halving.rungs - 1)
    if first < 1:
        raise ValueError(
            f"{halving.rungs} rungs with eta {halving.eta} need training.epochs of at least "
            f"{halving.eta ** (halving.rungs - 1)}, not {epochs}"
        )
    return [epochs // halving.eta**k for k in range(halving.rungs - 1, -1, -1)]


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
