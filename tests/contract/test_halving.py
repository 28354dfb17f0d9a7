"""Asynchronous successive halving's rules: the rungs of epochs, and the verdict on arrival."""

import math

import pytest
from pydantic import ValidationError

from contract.halving import Halving, check_rungs, judge


def test_a_rung_at_or_after_the_last_epoch_is_refused_naming_both():
    check_rungs(28, Halving(eta=3, rungs=[3, 9, 27]))
    with pytest.raises(ValueError, match=r"rung 27 is not before training\.epochs 27"):
        check_rungs(27, Halving(eta=3, rungs=[3, 9, 27]))


@pytest.mark.parametrize("rungs", [[], [0, 3], [3, 3], [9, 3], list(range(1, 12))])
def test_rungs_are_a_few_increasing_epochs(rungs):
    with pytest.raises(ValidationError):
        Halving(rungs=rungs)


def test_the_first_trial_to_reach_a_rung_goes_on():
    verdict = judge(0.2, [], eta=3, goal="max", rung=1, epoch=3)
    assert (verdict.promoted, verdict.rank, verdict.reached, verdict.cutoff) == (True, 1, 1, 0.2)


def test_only_the_top_third_of_those_arrived_so_far_goes_on_with_eta_3():
    earlier = [0.5, 0.9, 0.7, 0.6, 0.8]  # with the newcomer, 6 arrived: the top 2 go on

    second = judge(0.85, earlier, eta=3, goal="max", rung=2, epoch=9)
    third = judge(0.75, earlier, eta=3, goal="max", rung=2, epoch=9)

    assert (second.promoted, second.rank, second.reached, second.cutoff) == (True, 2, 6, 0.85)
    assert (third.promoted, third.rank, third.reached, third.cutoff) == (False, 3, 6, 0.8)
    assert third.reason("val_accuracy") == (
        "stopped at rung 2 (epoch 9): val_accuracy 0.75, cutoff 0.8, rank 3 of 6"
    )


def test_a_cost_is_ranked_lowest_first():
    verdict = judge(0.3, [0.2, 0.4], eta=2, goal="min", rung=1, epoch=5)
    assert (verdict.promoted, verdict.rank, verdict.cutoff) == (False, 2, 0.2)
    assert judge(0.1, [0.2, 0.4], eta=2, goal="min", rung=1, epoch=5).promoted


def test_a_tie_goes_to_the_newcomer_and_a_value_that_is_not_finite_ranks_last():
    assert judge(0.8, [0.8], eta=2, goal="max", rung=1, epoch=1).rank == 1
    diverged = judge(math.nan, [0.1], eta=2, goal="min", rung=1, epoch=1)
    assert (diverged.promoted, diverged.rank) == (False, 2)
    # An earlier non-finite value is beaten by any finite one.
    assert judge(5.0, [math.inf, math.nan], eta=3, goal="min", rung=1, epoch=1).rank == 1
