"""Asynchronous successive halving (ASHA, Li et al. 2018), as a sweep's trials meet it.

A trial is judged at each rung, an epoch count of the sweep's ``halving.rungs``; its own
``training.epochs`` is the last rung, where it simply ends. A trial reaching a rung goes on (is
promoted) if it is in the top ``n // eta`` of the ``n`` trials that reached the rung so far,
itself included. Otherwise it waits there, paused with its checkpoint: a later arrival may
push it into the top (ASHA promotes whoever is in the top and still waits). Once every trial
has reached the rung or ended, the rung is complete: the top ``max(1, n // eta)`` go on and the
rest, still waiting, stop. So one worker, taking trials one after another, trains what
synchronous successive halving would, and none waits on a slow trial longer than it must.
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


STATES = ("waiting", "promoted", "stopped")


@dataclass(frozen=True)
class Verdict:
    """A trial's judgement at a rung, with what a reader needs to see why: promoted, waiting
    for later arrivals, or stopped once the rung was complete."""

    rung: int  # counted from 1
    epoch: int  # epochs done when judged
    value: float  # the objective's value then (NaN when it was not finite)
    state: str  # one of STATES
    rank: int  # 1 is the best of those that had reached the rung when it was judged
    reached: int  # how many had, itself included
    cutoff: float  # the worst value that went on then (NaN while none could)

    @property
    def promoted(self) -> bool:
        return self.state == "promoted"

    def reason(self, metric: str) -> str:
        judged = f"at rung {self.rung} (epoch {self.epoch}): {metric} {self.value:.4g}"
        if self.state == "waiting":
            return f"waiting {judged}, rank {self.rank} of {self.reached} so far"
        return (
            f"{self.state} {judged}, cutoff {self.cutoff:.4g}, rank {self.rank} of {self.reached}"
        )


@dataclass(frozen=True)
class Arrival:
    """A trial at a rung, as the rule sees it: its value and its state there."""

    key: str  # the trial's job id
    value: float
    state: str  # one of STATES


def judge_rung(
    arrivals: list[Arrival], eta: int, goal: str, complete: bool
) -> dict[str, tuple[str, int, float]]:
    """The state each waiting trial is in now, {key: (state, rank, cutoff)}, among the ``n``
    ``arrivals`` at a rung in the order they arrived (goal "max" or "min"): promoted if in the
    top ``n // eta``; once the rung is ``complete``, the top ``max(1, n // eta)`` are promoted
    and the rest stop; else it waits. A stopped arrival (or one that ended while it waited)
    counts in ``n`` but holds no place in the top. A non-finite value ranks last; a tie goes
    to the earlier arrival. The cutoff is the worst value that goes on (NaN while none can)."""
    sign = 1.0 if goal == "max" else -1.0

    def score(arrival: Arrival) -> float:
        return sign * arrival.value if math.isfinite(arrival.value) else -math.inf

    keep = len(arrivals) // eta
    if complete:
        keep = max(1, keep)
    # Stable: arrival order breaks ties.
    places = sorted((a for a in arrivals if a.state != "stopped"), key=score, reverse=True)
    keep = min(keep, len(places))
    cutoff = sign * score(places[keep - 1]) if keep else math.nan
    states = {}
    for position, arrival in enumerate(places):
        if arrival.state != "waiting":
            continue
        rank = 1 + sum(1 for other in arrivals if score(other) > score(arrival))
        state = "promoted" if position < keep else "stopped" if complete else "waiting"
        states[arrival.key] = (state, rank, cutoff)
    return states


def stop_tags(verdict: Verdict) -> dict[str, str]:
    """A stopped trial's verdict as tags of its run, for the MLflow UI's columns."""
    return {
        "gradq.stopped_at_rung": str(verdict.rung),
        "gradq.rung_epoch": str(verdict.epoch),
        "gradq.rung_value": f"{verdict.value:.6g}",
        "gradq.rung_cutoff": f"{verdict.cutoff:.6g}",
        "gradq.rung_rank": f"{verdict.rank} of {verdict.reached}",
    }
