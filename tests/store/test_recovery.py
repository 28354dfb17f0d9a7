"""The reconciler's queries and the lease hand-offs on real SQLite and PostgreSQL: lost workers'
jobs requeued, failed or cancelled; messages re-sent; MLflow runs left open; jobs handed back,
checkpoints recorded and hand-offs requested only by or for the lease owner."""

from datetime import timedelta

import pytest
from sqlalchemy import update

from store import jobs, recovery
from store.db import transaction
from store.tables import Job, utcnow

SPEC = {"dataset": {"name": "faces"}}


def new_job(factory, max_attempts: int = 3) -> str:
    with transaction(factory) as session:
        job, _ = jobs.create_job(
            session, spec=SPEC, experiment="e", name=None, dataset="faces", epochs=10,
            max_attempts=max_attempts,
        )  # fmt: skip
        return job.id


def claim(factory, job_id: str, owner: str, lease_seconds: float = 60) -> Job | None:
    with transaction(factory) as session:
        return jobs.claim(session, job_id, owner, lease_seconds)


def running_job(factory, owner: str = "w@host/1", max_attempts: int = 3) -> str:
    job_id = new_job(factory, max_attempts)
    assert claim(factory, job_id, owner) is not None
    return job_id


def set_columns(factory, job_id: str, **values) -> None:
    with transaction(factory) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def expire_lease(factory, job_id: str) -> None:
    """The job's worker stopped beating a second ago."""
    set_columns(factory, job_id, lease_expires_at=utcnow() - timedelta(seconds=1))


def stored(factory, job_id: str) -> Job:
    with factory() as session:
        return session.get(Job, job_id)


def events(factory, job_id: str) -> list[tuple[str | None, str, int, str | None]]:
    with factory() as session:
        return [
            (e.from_status, e.to_status, e.attempt, e.detail)
            for e in jobs.events_of(session, job_id)
        ]


def assert_cancelled_and_released(session_factory, job_id: str) -> None:
    """The running job ended cancelled: lease let go, finish time set, its last event saying so."""
    job = stored(session_factory, job_id)
    assert (job.status, job.lease_owner) == ("cancelled", None)
    assert job.finished_at is not None
    assert events(session_factory, job_id)[-1][:2] == ("running", "cancelled")


def expire_leases(factory) -> list[recovery.Expired]:
    with transaction(factory) as session:
        return recovery.expire_leases(session)


# expire_leases


def test_a_lost_workers_job_is_queued_again_with_its_attempt_kept(session_factory):
    job_id = running_job(session_factory, owner="lost@host/42")
    expire_lease(session_factory, job_id)
    before = utcnow()

    found = expire_leases(session_factory)

    assert found == [recovery.Expired(job_id, "queued", None)]
    job = stored(session_factory, job_id)
    assert (job.status, job.attempts, job.lease_owner, job.lease_expires_at) == (
        "queued", 1, None, None,
    )  # fmt: skip
    assert job.dispatched_at >= before
    assert job.finished_at is None and job.error is None
    from_status, to_status, attempt, detail = events(session_factory, job_id)[-1]
    assert (from_status, to_status, attempt) == ("running", "queued", 1)
    assert "lost@host/42" in detail


def test_a_lost_workers_job_with_no_attempt_left_fails_with_the_reason(session_factory):
    job_id = running_job(session_factory, owner="first/1", max_attempts=3)
    for owner in ("second/1", "third/1"):
        expire_lease(session_factory, job_id)
        assert claim(session_factory, job_id, owner) is not None
    expire_lease(session_factory, job_id)
    before = utcnow()

    found = expire_leases(session_factory)

    assert found == [recovery.Expired(job_id, "failed", None)]
    job = stored(session_factory, job_id)
    assert (job.status, job.attempts, job.lease_owner) == ("failed", 3, None)
    assert job.error == "max attempts (3) exhausted: worker lost"
    assert job.finished_at >= before
    from_status, to_status, _, detail = events(session_factory, job_id)[-1]
    assert (from_status, to_status) == ("running", "failed")
    assert "third/1" in detail


def test_hand_backs_use_up_no_attempt_of_a_job_whose_workers_are_then_lost(session_factory):
    job_id = running_job(session_factory, owner="deployed/1", max_attempts=2)
    for owner in ("deployed/2", "deployed/3"):  # two deploys, each handing the job back
        with transaction(session_factory) as session:
            assert jobs.release(session, job_id, stored(session_factory, job_id).lease_owner,
                                "worker shutting down") == "queued"  # fmt: skip
        assert claim(session_factory, job_id, owner) is not None
    expire_lease(session_factory, job_id)  # a first lost worker: one of two attempts used

    assert expire_leases(session_factory) == [recovery.Expired(job_id, "queued", None)]
    assert "1 of 2 attempts used" in events(session_factory, job_id)[-1][3]
    assert claim(session_factory, job_id, "deployed/4") is not None
    expire_lease(session_factory, job_id)  # a second lost worker: none left
    assert expire_leases(session_factory) == [recovery.Expired(job_id, "failed", None)]
    job = stored(session_factory, job_id)
    assert (job.attempts, job.handoffs, job.error) == (
        4, 2, "max attempts (2) exhausted: worker lost",
    )  # fmt: skip


def test_a_lost_workers_job_whose_cancel_was_requested_is_cancelled(session_factory):
    job_id = running_job(session_factory)
    with transaction(session_factory) as session:
        jobs.request_cancel(session, job_id)
    expire_lease(session_factory, job_id)

    found = expire_leases(session_factory)

    assert found == [recovery.Expired(job_id, "cancelled", None)]
    assert_cancelled_and_released(session_factory, job_id)


def test_a_running_job_with_a_live_lease_is_left_alone(session_factory):
    job_id = running_job(session_factory, owner="alive/1")
    before = stored(session_factory, job_id)

    assert expire_leases(session_factory) == []

    after = stored(session_factory, job_id)
    assert (after.status, after.lease_owner, after.lease_expires_at) == (
        "running", "alive/1", before.lease_expires_at,
    )  # fmt: skip
    assert len(events(session_factory, job_id)) == 2


def test_expiring_leases_twice_changes_nothing_the_second_time(session_factory):
    requeued = running_job(session_factory)
    failed = running_job(session_factory, max_attempts=1)
    for job_id in (requeued, failed):
        expire_lease(session_factory, job_id)
    assert len(expire_leases(session_factory)) == 2
    rows = {job_id: stored(session_factory, job_id) for job_id in (requeued, failed)}
    history = {job_id: events(session_factory, job_id) for job_id in (requeued, failed)}

    assert expire_leases(session_factory) == []

    for job_id in (requeued, failed):
        again = stored(session_factory, job_id)
        assert (again.status, again.attempts, again.dispatched_at, again.finished_at) == (
            rows[job_id].status, rows[job_id].attempts,
            rows[job_id].dispatched_at, rows[job_id].finished_at,
        )  # fmt: skip
        assert events(session_factory, job_id) == history[job_id]


# claim


def test_claim_refuses_an_expired_job_that_used_all_its_attempts(session_factory):
    job_id = running_job(session_factory, owner="only/1", max_attempts=1)
    expire_lease(session_factory, job_id)

    assert claim(session_factory, job_id, "late/1") is None

    job = stored(session_factory, job_id)
    assert (job.status, job.attempts, job.lease_owner) == ("running", 1, "only/1")


def test_claim_takes_an_expired_job_with_attempts_left_as_its_next_attempt(session_factory):
    job_id = running_job(session_factory, owner="lost/1", max_attempts=2)
    expire_lease(session_factory, job_id)

    taken = claim(session_factory, job_id, "new/1")

    assert (taken.status, taken.attempts, taken.lease_owner) == ("running", 2, "new/1")
    assert taken.lease_expires_at > utcnow()


def test_claim_clears_a_handoff_requested_of_the_previous_owner(session_factory):
    job_id = running_job(session_factory, owner="leaving@host/1")
    with transaction(session_factory) as session:
        assert jobs.request_handoff(session, "leaving@host") == 1
    expire_lease(session_factory, job_id)

    claim(session_factory, job_id, "staying@host/1")

    assert stored(session_factory, job_id).handoff_requested is False
    with transaction(session_factory) as session:
        beat = jobs.heartbeat(session, job_id, "staying@host/1", 60, epoch=1, cost=0.5)
    assert beat == jobs.Heartbeat(still_owner=True, cancel_requested=False, handoff_requested=False)


# to_dispatch


def test_to_dispatch_sends_unsent_and_stale_queued_jobs_and_marks_them(session_factory):
    never_sent = new_job(session_factory)
    stale = new_job(session_factory)
    set_columns(session_factory, stale, dispatched_at=utcnow() - timedelta(seconds=120))
    fresh = new_job(session_factory)
    set_columns(session_factory, fresh, dispatched_at=utcnow())
    running = running_job(session_factory)  # created undispatched
    cancelling = new_job(session_factory)
    set_columns(session_factory, cancelling, cancel_requested=True)
    before = utcnow()

    with transaction(session_factory) as session:
        sent = recovery.to_dispatch(session, redispatch_seconds=60)

    assert sorted(sent) == sorted([never_sent, stale])
    for job_id in sent:
        assert stored(session_factory, job_id).dispatched_at >= before
    assert stored(session_factory, running).dispatched_at is None
    assert stored(session_factory, cancelling).dispatched_at is None


def test_to_dispatch_right_after_a_dispatch_sends_nothing(session_factory):
    new_job(session_factory)
    with transaction(session_factory) as session:
        assert len(recovery.to_dispatch(session, redispatch_seconds=60)) == 1

    with transaction(session_factory) as session:
        assert recovery.to_dispatch(session, redispatch_seconds=60) == []


# runs_to_close and mark_mlflow_closed


def finished_job(factory, status: str, run_id: str | None, **finish) -> str:
    job_id = running_job(factory, owner="w/1")
    with transaction(factory) as session:
        if run_id is not None:
            jobs.set_mlflow_run(session, job_id, "1", run_id)
    with transaction(factory) as session:
        assert jobs.finish(session, job_id, "w/1", status, **finish)
    return job_id


def runs_to_close(factory) -> list[recovery.OpenRun]:
    with factory() as session:
        return recovery.runs_to_close(session)


def test_a_finished_jobs_open_run_is_listed_until_marked_closed(session_factory):
    job_id = finished_job(session_factory, "failed", "run1", error="boom")
    running = running_job(session_factory)
    with transaction(session_factory) as session:
        jobs.set_mlflow_run(session, running, "1", "run2")

    assert runs_to_close(session_factory) == [recovery.OpenRun(job_id, "run1", "failed", "boom")]

    with transaction(session_factory) as session:
        recovery.mark_mlflow_closed(session, job_id)
    assert runs_to_close(session_factory) == []
    assert stored(session_factory, job_id).mlflow_closed_at is not None


def test_a_run_closed_by_its_worker_is_not_listed(session_factory):
    job_id = finished_job(session_factory, "succeeded", "run1", mlflow_closed=True)

    assert stored(session_factory, job_id).mlflow_closed_at is not None
    assert runs_to_close(session_factory) == []


def test_a_finished_job_without_a_run_is_not_listed(session_factory):
    finished_job(session_factory, "failed", None, error="no MLflow")

    assert runs_to_close(session_factory) == []


# release


def test_only_the_lease_owner_can_hand_a_job_back(session_factory):
    job_id = running_job(session_factory, owner="owner/1")

    with transaction(session_factory) as session:
        assert not jobs.release(session, job_id, "stranger/1", "not mine")

    job = stored(session_factory, job_id)
    assert (job.status, job.lease_owner) == ("running", "owner/1")
    assert len(events(session_factory, job_id)) == 2


def test_a_released_job_is_queued_without_lease_for_the_reconciler_to_send(session_factory):
    job_id = running_job(session_factory, owner="leaving@host/1")
    with transaction(session_factory) as session:
        jobs.request_handoff(session, "leaving@host")

    with transaction(session_factory) as session:
        assert jobs.release(session, job_id, "leaving@host/1", "worker shutting down")

    job = stored(session_factory, job_id)
    assert (job.status, job.attempts, job.lease_owner, job.lease_expires_at) == (
        "queued", 1, None, None,
    )  # fmt: skip
    assert job.handoff_requested is False
    assert job.dispatched_at is None  # the outbox: the next pass sends it
    with transaction(session_factory) as session:
        assert recovery.to_dispatch(session, 300, include_stale=False) == [job_id]
    assert events(session_factory, job_id)[-1] == ("running", "queued", 1, "worker shutting down")
    with transaction(session_factory) as session:
        assert not jobs.release(session, job_id, "leaving@host/1", "twice")


def test_a_job_released_after_its_cancel_was_requested_ends_cancelled(session_factory):
    job_id = running_job(session_factory, owner="leaving@host/1")
    with transaction(session_factory) as session:
        jobs.request_cancel(session, job_id)  # arrives after the worker's last heartbeat

    with transaction(session_factory) as session:
        assert jobs.release(session, job_id, "leaving@host/1", "worker shutting down") == (
            "cancelled"
        )

    assert_cancelled_and_released(session_factory, job_id)


# record_checkpoint


def test_only_the_lease_owner_of_a_running_job_records_a_checkpoint(session_factory):
    job_id = running_job(session_factory, owner="owner/1")

    with transaction(session_factory) as session:
        assert jobs.record_checkpoint(session, job_id, "owner/1", "/c/a.npz", 5, "a" * 64)
        assert not jobs.record_checkpoint(session, job_id, "stranger/1", "/c/b.npz", 9, "b" * 64)
    with transaction(session_factory) as session:
        assert jobs.release(session, job_id, "owner/1", "shutting down")
    with transaction(session_factory) as session:
        assert not jobs.record_checkpoint(session, job_id, "owner/1", "/c/c.npz", 7, "c" * 64)

    job = stored(session_factory, job_id)
    assert (job.checkpoint_uri, job.checkpoint_epoch, job.checkpoint_sha256) == (
        "/c/a.npz", 5, "a" * 64,
    )  # fmt: skip


# request_handoff


def handoff_flags(factory, owners: dict[str, str]) -> dict[str, bool]:
    with transaction(factory) as session:
        return {
            owner: jobs.heartbeat(session, job_id, owner, 60, epoch=1, cost=0.5).handoff_requested
            for owner, job_id in owners.items()
        }


def test_a_handoff_request_flags_the_running_jobs_of_that_worker_only(session_factory):
    owners = ["host-a@x/1", "host-a@x/2", "host-a@xy/1", "other/1"]
    by_owner = {owner: running_job(session_factory, owner=owner) for owner in owners}

    with transaction(session_factory) as session:
        assert jobs.request_handoff(session, "host-a@x") == 2

    assert handoff_flags(session_factory, by_owner) == {
        "host-a@x/1": True, "host-a@x/2": True, "host-a@xy/1": False, "other/1": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("hostname", "same", "lookalike"),
    [("host_a@x", "host_a@x/1", "hostXa@x/1"), ("h%x", "h%x/1", "h-anything-x/1")],
)
def test_a_handoff_request_matches_underscore_and_percent_literally(
    session_factory, hostname, same, lookalike
):
    by_owner = {owner: running_job(session_factory, owner=owner) for owner in (same, lookalike)}

    with transaction(session_factory) as session:
        assert jobs.request_handoff(session, hostname) == 1

    assert handoff_flags(session_factory, by_owner) == {same: True, lookalike: False}
