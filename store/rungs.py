"""A sweep's successive halving in SQL: a trial's arrival at a rung, the verdicts it brings
(contract/halving.py ``judge_rung``) and their effect on the waiting trials' jobs.

Every call locks the sweep's row (PostgreSQL; SQLite has one writer), so arrivals and
settlements of one sweep are judged one after the other. A waiting trial's job is queued but
never claimed nor sent (store/jobs.py, store/recovery.py) until it is promoted: then it is
queued to be sent again, and resumes from its checkpoint at the rung. Its callers send the
released trials' messages after the commit (a message lost then is sent again as any stale
one is: store/recovery.py ``to_dispatch``); the reconciler's ``settle_waiting`` settles what a
process that died before settling left waiting."""

import math
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from contract.halving import Arrival, Halving, Verdict, judge_rung
from store.jobs import record_event
from store.tables import FINAL_STATUSES, Job, Sweep, SweepRung, utcnow


@dataclass
class Settled:
    """What a judgement changed beyond the arriving trial."""

    released: list[str] = field(default_factory=list)  # promoted while queued: to be sent
    stopped: list[str] = field(default_factory=list)  # stopped while queued: now cancelled


def reach_rung(
    session: Session, sweep: Sweep, job_id: str, rung: int, epoch: int, value: float
) -> tuple[Verdict, Settled]:
    """The trial's verdict at ``rung``: the stored one if an earlier attempt reached the rung
    (a retry is never counted twice), otherwise judged with the rung's other arrivals; and
    what the arrival settled for the others."""
    _lock(session, sweep.id)
    stored = session.get(SweepRung, (sweep.id, rung, job_id))
    settled = Settled()
    if stored is None:
        stored = SweepRung(
            sweep_id=sweep.id, job_id=job_id, rung=rung, epoch=epoch, value=_finite(value),
            promoted=False, waiting=True, rank=0, reached=0, cutoff=None,
        )  # fmt: skip
        session.add(stored)
        session.flush()
        settled = _settle(session, sweep, arriving=stored)
    return verdict_of(stored), settled


def settle(session: Session, sweep: Sweep) -> Settled:
    """Judge the sweep's rungs again, as after a trial ended or was handed back: a rung that
    is now complete promotes or stops its waiting trials."""
    _lock(session, sweep.id)
    return _settle(session, sweep)


def settle_waiting(session: Session) -> Settled:
    """``settle`` every sweep that has a queued trial waiting at a rung (the reconciler's
    pass: whoever should have settled it may have died)."""
    waiting = (
        select(SweepRung.sweep_id)
        .join(Job, Job.id == SweepRung.job_id)
        .where(SweepRung.waiting, Job.status == "queued")
        .distinct()
    )
    settled = Settled()
    # In one order, so that two passes at once lock the sweeps' rows without a deadlock.
    sweeps = session.scalars(select(Sweep).where(Sweep.id.in_(waiting)).order_by(Sweep.id))
    for sweep in sweeps.all():
        found = settle(session, sweep)
        settled.released += found.released
        settled.stopped += found.stopped
    return settled


def send_again_if_promoted(session: Session, job_id: str) -> bool:
    """A trial handed back waiting at a rung, but promoted meanwhile (its hand-back queued it
    with no message): marked as sent; True if the caller is to send it."""
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.status != "queued" or job.dispatched_at is not None:
        return False
    waiting = select(SweepRung.rung).where(SweepRung.job_id == job_id, SweepRung.waiting)
    if session.scalar(waiting) is not None:
        return False
    job.dispatched_at = utcnow()
    return True


def _lock(session: Session, sweep_id: str) -> None:
    session.execute(select(Sweep.id).where(Sweep.id == sweep_id).with_for_update())


def _settle(session: Session, sweep: Sweep, arriving: SweepRung | None = None) -> Settled:
    """Each rung in order, judged among its arrivals. A rung is complete once every trial has
    reached it or ended; a lower rung's stops, seen by the next, may complete it. A trial
    still running (between its verdict and its hand-back) may be promoted in its row alone;
    it is stopped only once it is queued, by the settlement its worker asks for after the
    hand-back."""
    halving = Halving.model_validate(sweep.request["halving"])
    trials = {job.id: job for job in session.scalars(select(Job).where(Job.sweep_id == sweep.id))}
    settled = Settled()
    for rung in range(1, len(halving.rungs) + 1):
        rows = session.scalars(
            select(SweepRung)
            .where(SweepRung.sweep_id == sweep.id, SweepRung.rung == rung)
            .order_by(SweepRung.created_at, SweepRung.job_id)
        ).all()
        reached = {row.job_id for row in rows}
        complete = all(job.status in FINAL_STATUSES or job.id in reached for job in trials.values())
        arrivals = [_arrival(row, trials[row.job_id]) for row in rows]
        states = judge_rung(arrivals, halving.eta, sweep.objective_goal, complete)
        for row in rows:
            if row.job_id not in states:
                continue
            state, rank, cutoff = states[row.job_id]
            job = trials[row.job_id]
            if state == "stopped" and job.status != "queued" and row is not arriving:
                continue  # still running: see above
            row.promoted, row.waiting = state == "promoted", state == "waiting"
            row.rank, row.reached, row.cutoff = rank, len(rows), _finite(cutoff)
            if job.status == "queued" and state != "waiting":
                _apply(session, job, verdict_of(row), sweep.objective_metric, settled)
    session.flush()
    return settled


def _arrival(row: SweepRung, job: Job) -> Arrival:
    value = math.nan if row.value is None else row.value
    if row.promoted:
        return Arrival(row.job_id, value, "promoted")
    # A waiting trial cancelled by hand is no candidate: it stays in the count.
    waiting = row.waiting and job.status not in FINAL_STATUSES
    return Arrival(row.job_id, value, "waiting" if waiting else "stopped")


def _apply(session: Session, job: Job, verdict: Verdict, metric: str, settled: Settled) -> None:
    """A queued trial's verdict changed: promoted, it is sent again (by the caller, after the
    commit); stopped, it ends cancelled with the reason (its run is closed by the reconciler,
    with the verdict as tags)."""
    reason = verdict.reason(metric)
    if verdict.promoted:
        job.dispatched_at = utcnow()
        record_event(session, job, "queued", "queued", reason)
        settled.released.append(job.id)
    else:
        job.status, job.finished_at, job.error = "cancelled", utcnow(), reason
        record_event(session, job, "cancelled", "queued", reason)
        settled.stopped.append(job.id)


def verdict_of(row: SweepRung) -> Verdict:
    value, cutoff = (math.nan if v is None else v for v in (row.value, row.cutoff))
    state = "promoted" if row.promoted else "waiting" if row.waiting else "stopped"
    return Verdict(row.rung, row.epoch, value, state, row.rank, row.reached, cutoff)


def stopped_verdict(session: Session, job_id: str) -> Verdict | None:
    """The verdict that stopped the trial, if one did."""
    row = session.scalar(
        select(SweepRung).where(
            SweepRung.job_id == job_id, SweepRung.promoted.is_(False), SweepRung.waiting.is_(False)
        )
    )
    return None if row is None else verdict_of(row)


def rungs_of(session: Session, sweep_id: str) -> dict[str, list[SweepRung]]:
    """{job id: the rungs it reached, in order}, for the sweep's trials table."""
    found: dict[str, list[SweepRung]] = {}
    query = select(SweepRung).where(SweepRung.sweep_id == sweep_id).order_by(SweepRung.rung)
    for row in session.scalars(query):
        found.setdefault(row.job_id, []).append(row)
    return found


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
