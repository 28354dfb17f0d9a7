"""A sweep's halving verdicts in SQL: judged once per trial and rung, then read back."""

import math

from store import sweeps
from store.db import transaction
from store.tables import Sweep
from tests.workers.helpers import FACES_LOGREG, with_experiment


def halving_sweep(session_factory, trials: int, goal: str = "max") -> tuple[Sweep, list[str]]:
    spec = with_experiment(FACES_LOGREG)
    with transaction(session_factory) as session:
        made = sweeps.create_sweep(
            session,
            request={"base": spec, "space": {}, "halving": {"eta": 2, "rungs": [10, 20]}},
            trial_specs=[spec] * trials,
            objective=("val_accuracy", goal),
            idempotency_key=None,
            request_sha256="0" * 64,
            token_fingerprint=None,
        )
        return made.sweep, [trial.id for trial in made.trials]


def reach(session_factory, sweep, job_id, rung, value):
    with transaction(session_factory) as session:
        return sweeps.reach_rung(session, sweep, job_id, rung, 10 * rung, value)


def test_a_trial_reaching_a_rung_again_gets_its_first_verdict_and_is_counted_once(
    session_factory,
):
    sweep, (a, b, c) = halving_sweep(session_factory, 3)

    first = reach(session_factory, sweep, a, 1, 0.7)
    stopped = reach(session_factory, sweep, b, 1, 0.6)
    retried = reach(session_factory, sweep, b, 1, 0.9)  # a later attempt, another value
    third = reach(session_factory, sweep, c, 1, 0.65)

    assert (first.promoted, first.rank, first.reached) == (True, 1, 1)
    assert (stopped.promoted, stopped.rank, stopped.reached, stopped.cutoff) == (False, 2, 2, 0.7)
    assert retried == stopped
    assert (third.promoted, third.rank, third.reached) == (False, 2, 3)


def test_each_rung_is_judged_among_its_own_arrivals_and_read_back_by_trial(session_factory):
    sweep, (a, b) = halving_sweep(session_factory, 2, goal="min")
    reach(session_factory, sweep, a, 1, 0.5)
    reach(session_factory, sweep, b, 1, 0.4)
    at_two = reach(session_factory, sweep, b, 2, math.nan)  # diverged: stored as NULL

    assert (at_two.promoted, at_two.reached) == (True, 1)  # alone at rung 2
    with transaction(session_factory) as session:
        rows = sweeps.rungs_of(session, sweep.id)
        found = {
            job: [(r.rung, r.value, r.promoted, r.rank) for r in rs] for job, rs in rows.items()
        }
    assert found == {a: [(1, 0.5, True, 1)], b: [(1, 0.4, True, 1), (2, None, True, 1)]}
