"""A sweep's halving in SQL: a trial's arrival at a rung, judged once; waiting trials neither
claimed nor sent until a later arrival promotes them; a complete rung stops the rest."""

import math

from sqlalchemy import select

from store import jobs, recovery, rungs, sweeps
from store.db import transaction
from store.tables import Job, JobEvent, Sweep, SweepRung
from tests.workers.helpers import FACES_LOGREG, with_experiment

OWNER = "test-worker/1"


def halving_sweep(
    session_factory, trials: int, goal: str = "max", eta: int = 2
) -> tuple[Sweep, list[str]]:
    spec = with_experiment(FACES_LOGREG)
    with transaction(session_factory) as session:
        made = sweeps.create_sweep(
            session,
            request={"base": spec, "space": {}, "halving": {"eta": eta, "rungs": [10, 20]}},
            trial_specs=[spec] * trials,
            objective=("val_accuracy", goal),
            idempotency_key=None,
            request_sha256="0" * 64,
            token_fingerprint=None,
        )
        return made.sweep, [trial.id for trial in made.trials]


def reach(session_factory, sweep, job_id, rung, value):
    """The trial claims (if it is not running) and reaches ``rung``: (verdict, settled)."""
    with transaction(session_factory) as session:
        if session.get(Job, job_id).status != "running":
            assert jobs.claim(session, job_id, OWNER, 60) is not None
        return rungs.reach_rung(session, sweep, job_id, rung, 10 * rung, value)


def hand_back(session_factory, job_id, detail="waiting"):
    with transaction(session_factory) as session:
        return jobs.release(session, job_id, OWNER, detail)


def job(session_factory, job_id) -> Job:
    with transaction(session_factory) as session:
        found = session.get(Job, job_id)
        session.expunge(found)
        return found


def test_a_trial_reaching_a_rung_again_gets_its_first_verdict_and_is_counted_once(
    session_factory,
):
    sweep, (a, b, c) = halving_sweep(session_factory, 3)

    first, _ = reach(session_factory, sweep, a, 1, 0.7)
    second, _ = reach(session_factory, sweep, b, 1, 0.6)
    retried, _ = reach(session_factory, sweep, b, 1, 0.9)  # a later attempt, another value

    assert (first.state, first.rank, first.reached) == ("waiting", 1, 1)  # 1 // 2: none yet
    assert (second.state, second.rank, second.reached, second.cutoff) == ("waiting", 2, 2, 0.7)
    assert retried == second
    with transaction(session_factory) as session:
        verdicts = rungs.rungs_of(session, sweep.id)
    # The second arrival made a top half of one: the first trial, still running, is promoted.
    assert [(r.rung, r.promoted, r.waiting) for r in verdicts[a]] == [(1, True, False)]
    assert [(r.rung, r.promoted, r.waiting) for r in verdicts[b]] == [(1, False, True)]
    assert c not in verdicts


def test_a_waiting_trial_is_neither_claimed_nor_sent_until_a_later_arrival_promotes_it(
    session_factory,
):
    sweep, (a, b, *_) = halving_sweep(session_factory, 4)
    reach(session_factory, sweep, a, 1, 0.5)
    assert hand_back(session_factory, a) == "queued"  # waiting at rung 1, its checkpoint kept

    with transaction(session_factory) as session:
        assert jobs.claim(session, a, OWNER, 60) is None
        assert a not in recovery.to_dispatch(session, redispatch_seconds=0)
        assert recovery.count_queued(session) == 3  # b, c, d: a needs no message

    verdict, settled = reach(session_factory, sweep, b, 1, 0.4)  # 2 arrived: the top one goes on
    assert verdict.state == "waiting"
    assert settled.released == [a] and settled.stopped == []
    promoted = job(session_factory, a)
    assert promoted.status == "queued" and promoted.dispatched_at is not None
    with transaction(session_factory) as session:
        events = session.scalars(select(JobEvent.detail).where(JobEvent.job_id == a)).all()
        assert events[-1] == (
            "promoted at rung 1 (epoch 10): val_accuracy 0.5, cutoff 0.5, rank 1 of 2"
        )
        assert jobs.claim(session, a, OWNER, 60) is not None  # resumes from its checkpoint


def test_a_complete_rung_stops_the_queued_trials_still_waiting_with_the_reason(session_factory):
    sweep, (a, b, c) = halving_sweep(session_factory, 3)
    reach(session_factory, sweep, a, 1, 0.2)
    hand_back(session_factory, a)
    reach(session_factory, sweep, b, 1, 0.9)  # 2 of 3: b goes on (still running: row alone)
    verdict, settled = reach(session_factory, sweep, c, 1, 0.5)  # the last: the rung is complete

    # 3 // 2 = 1 goes on, b already: c and a stop; a, queued, is cancelled by the arrival.
    assert verdict.state == "stopped" and verdict.reason("val_accuracy") == (
        "stopped at rung 1 (epoch 10): val_accuracy 0.5, cutoff 0.9, rank 2 of 3"
    )
    assert settled.stopped == [a] and settled.released == []
    stopped = job(session_factory, a)
    assert stopped.status == "cancelled" and stopped.finished_at is not None
    assert stopped.error == (
        "stopped at rung 1 (epoch 10): val_accuracy 0.2, cutoff 0.9, rank 3 of 3"
    )
    with transaction(session_factory) as session:
        assert rungs.stopped_verdict(session, a).rank == 3
        assert rungs.stopped_verdict(session, b) is None


def test_a_trial_that_ends_before_a_rung_completes_it_once_settled(session_factory):
    sweep, (a, b, c) = halving_sweep(session_factory, 3, eta=3)
    reach(session_factory, sweep, a, 1, 0.2)
    hand_back(session_factory, a)
    reach(session_factory, sweep, b, 1, 0.6)
    hand_back(session_factory, b)
    with transaction(session_factory) as session:  # c fails before the rung: it never arrives
        assert jobs.claim(session, c, OWNER, 60) is not None
        assert jobs.finish(session, c, OWNER, "failed", error="diverged")

    with transaction(session_factory) as session:  # the reconciler's pass
        settled = rungs.settle_waiting(session)

    assert settled.released == [b] and settled.stopped == [a]  # max(1, 2 // 3): one goes on
    assert job(session_factory, a).status == "cancelled"
    assert job(session_factory, b).dispatched_at is not None
    with transaction(session_factory) as session:
        assert rungs.settle_waiting(session) == rungs.Settled()  # nothing left to settle


def test_a_trial_promoted_between_its_verdict_and_its_hand_back_is_sent_again(session_factory):
    sweep, (a, b, c) = halving_sweep(session_factory, 3)
    reach(session_factory, sweep, a, 1, 0.8)  # waiting, still running
    _, settled = reach(session_factory, sweep, b, 1, 0.1)  # promotes a before it is handed back
    assert settled.released == []  # a is running: its row alone changes
    hand_back(session_factory, a)  # queued with no message

    with transaction(session_factory) as session:
        assert rungs.send_again_if_promoted(session, a)
        assert not rungs.send_again_if_promoted(session, a)  # marked sent: once
        assert not rungs.send_again_if_promoted(session, c)  # never handed back: not ours


def test_each_rung_is_judged_among_its_own_arrivals_and_read_back_by_trial(session_factory):
    sweep, (a, b) = halving_sweep(session_factory, 2, goal="min")
    reach(session_factory, sweep, a, 1, 0.5)
    reach(session_factory, sweep, b, 1, 0.4)  # complete: b goes on; a, running, waits
    hand_back(session_factory, a)
    with transaction(session_factory) as session:  # as a's worker does after its hand-back
        assert rungs.settle(session, sweep).stopped == [a]
    at_two, _ = reach(session_factory, sweep, b, 2, math.nan)  # diverged: stored as NULL

    assert (at_two.state, at_two.reached) == ("promoted", 1)  # alone at rung 2, and complete
    with transaction(session_factory) as session:
        rows = rungs.rungs_of(session, sweep.id)
        found = {
            job: [(r.rung, r.value, r.promoted, r.waiting, r.rank) for r in rs]
            for job, rs in rows.items()
        }
    assert found == {
        a: [(1, 0.5, False, False, 2)],
        b: [(1, 0.4, True, False, 1), (2, None, True, False, 1)],
    }


def test_a_higher_rung_is_judged_while_a_lower_one_is_not_complete(session_factory):
    sweep, (a, b, c, _) = halving_sweep(session_factory, 4)
    reach(session_factory, sweep, a, 1, 0.9)
    reach(session_factory, sweep, b, 1, 0.8)  # 2 // 2: a goes on; b waits (running)
    assert hand_back(session_factory, b) == "queued"
    first, _ = reach(session_factory, sweep, a, 2, 0.6)  # c and d have not reached rung 1
    assert (first.state, first.rank, first.reached) == ("waiting", 1, 1)
    hand_back(session_factory, a)
    reach(session_factory, sweep, c, 1, 0.95)  # 3 // 2: c, the best, goes on
    second, settled = reach(session_factory, sweep, c, 2, 0.7)  # 2 at rung 2: c goes on

    assert (second.state, second.rank, second.reached) == ("promoted", 1, 2)
    assert settled.released == []
    with transaction(session_factory) as session:
        verdict = rungs.verdict_of(session.get(SweepRung, (sweep.id, 2, a)))
    assert (verdict.state, verdict.rank, verdict.reached) == ("waiting", 2, 2)  # so far
