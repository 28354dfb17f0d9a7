"""Asynchronous successive halving's rules: the rungs of epochs, and the verdicts at a rung."""

import math

import pytest
from pydantic import ValidationError

from contract.halving import Arrival, Halving, Verdict, check_rungs, judge_rung


def test_a_rung_at_or_after_the_last_epoch_is_refused_naming_both():
    check_rungs(28, Halving(eta=3, rungs=[3, 9, 27]))
    with pytest.raises(ValueError, match=r"rung 27 is not before training\.epochs 27"):
        check_rungs(27, Halving(eta=3, rungs=[3, 9, 27]))


@pytest.mark.parametrize("rungs", [[], [0, 3], [3, 3], [9, 3], list(range(1, 12))])
def test_rungs_are_a_few_increasing_epochs(rungs):
    with pytest.raises(ValidationError):
        Halving(rungs=rungs)


def arrivals(*values: float, promoted: tuple[int, ...] = ()) -> list[Arrival]:
    """Trials "t0", "t1", ... in arrival order; those at ``promoted`` went on already."""
    return [
        Arrival(f"t{i}", value, "promoted" if i in promoted else "waiting")
        for i, value in enumerate(values)
    ]


def test_the_first_trials_to_reach_a_rung_wait_until_eta_have():
    state, rank, cutoff = judge_rung(arrivals(0.2), eta=3, goal="max", complete=False)["t0"]
    assert (state, rank, math.isnan(cutoff)) == ("waiting", 1, True)
    states = judge_rung(arrivals(0.2, 0.5), eta=3, goal="max", complete=False)
    assert {key: state[:2] for key, state in states.items()} == {
        "t0": ("waiting", 2),
        "t1": ("waiting", 1),
    }
    # The third arrival makes a top third of one: the best, an earlier one here, goes on.
    states = judge_rung(arrivals(0.2, 0.5, 0.4), eta=3, goal="max", complete=False)
    assert states == {
        "t0": ("waiting", 3, 0.5),
        "t1": ("promoted", 1, 0.5),
        "t2": ("waiting", 2, 0.5),
    }


def test_a_waiting_trial_is_promoted_once_it_is_in_the_top_of_more_arrivals():
    # Six arrived, the top two go on: t1 went on at three; t0 is now second and goes on.
    six = arrivals(0.8, 0.9, 0.1, 0.2, 0.3, 0.4, promoted=(1,))
    states = judge_rung(six, eta=3, goal="max", complete=False)
    assert states["t0"] == ("promoted", 2, 0.8)
    assert {key for key, (state, _, _) in states.items() if state == "waiting"} == {
        "t2", "t3", "t4", "t5"
    }  # fmt: skip
    assert "t1" not in states  # promoted already: no verdict again


def test_once_the_rung_is_complete_the_rest_stop_and_at_least_one_goes_on():
    states = judge_rung(arrivals(0.5, 0.7), eta=3, goal="max", complete=True)
    assert states == {"t0": ("stopped", 2, 0.7), "t1": ("promoted", 1, 0.7)}
    verdict = Verdict(2, 9, 0.5, "stopped", 2, 2, 0.7)
    assert verdict.reason("val_accuracy") == (
        "stopped at rung 2 (epoch 9): val_accuracy 0.5, cutoff 0.7, rank 2 of 2"
    )
    waiting = Verdict(1, 3, 0.25, "waiting", 2, 2, math.nan)
    assert waiting.reason("cost") == "waiting at rung 1 (epoch 3): cost 0.25, rank 2 of 2 so far"


def test_a_cost_is_ranked_lowest_first():
    states = judge_rung(arrivals(0.3, 0.2), eta=2, goal="min", complete=False)
    assert states == {"t0": ("waiting", 2, 0.2), "t1": ("promoted", 1, 0.2)}


def test_a_tie_goes_to_the_earlier_arrival_and_a_value_that_is_not_finite_ranks_last():
    states = judge_rung(arrivals(0.8, 0.8), eta=2, goal="max", complete=False)
    assert (states["t0"][0], states["t1"][0]) == ("promoted", "waiting")
    states = judge_rung(arrivals(math.nan, 5.0, math.inf), eta=3, goal="min", complete=True)
    assert states["t1"] == ("promoted", 1, 5.0)
    assert (states["t0"][0], states["t2"][0]) == ("stopped", "stopped")


def test_a_trial_that_ended_while_waiting_counts_but_holds_no_place():
    # The best of three was cancelled while it waited: one of the two others still goes on.
    gone = [
        Arrival("t0", 0.9, "stopped"),
    ]
    gone += [Arrival("t1", 0.5, "waiting"), Arrival("t2", 0.7, "waiting")]
    states = judge_rung(gone, eta=3, goal="max", complete=True)
    assert states == {"t1": ("stopped", 3, 0.7), "t2": ("promoted", 2, 0.7)}
    # Before the rung is complete it still counts: 3 // 3 = 1 place, taken by the better one.
    assert judge_rung(gone, eta=3, goal="max", complete=False)["t2"][0] == "promoted"
