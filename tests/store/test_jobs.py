"""Job queries on real SQLite and PostgreSQL: idempotent creation, cursor pages, claims with a
lease, heartbeats, finishing and cancelling, each status change with its event."""

import threading
import time

import pytest

from store import jobs
from store.db import transaction
from store.tables import Job

SPEC = {"dataset": {"name": "faces"}}


def new_job(factory, key=None, body_hash=None, experiment="e"):
    with transaction(factory) as session:
        job, created = jobs.create_job(
            session, spec=SPEC, experiment=experiment, name=None, dataset="faces", epochs=10,
            idempotency_key=key, request_sha256=body_hash,
        )  # fmt: skip
    return job, created


def test_a_new_job_is_queued_with_its_first_event(session_factory):
    job, created = new_job(session_factory)
    assert created
    with session_factory() as session:
        stored = session.get(Job, job.id)
        assert (stored.status, stored.attempts, stored.dispatched_at) == ("queued", 0, None)
        events = jobs.events_of(session, job.id)
    assert [(e.from_status, e.to_status) for e in events] == [(None, "queued")]


def test_same_idempotency_key_and_body_gives_the_same_job(session_factory):
    first, created_first = new_job(session_factory, key="k1", body_hash="h")
    second, created_second = new_job(session_factory, key="k1", body_hash="h")
    assert (created_first, created_second) == (True, False)
    assert second.id == first.id


def test_same_idempotency_key_with_another_body_is_a_conflict(session_factory):
    new_job(session_factory, key="k2", body_hash="h")
    with pytest.raises(jobs.IdempotencyConflictError):
        new_job(session_factory, key="k2", body_hash="other")


def test_concurrent_creations_with_one_key_make_one_job(session_factory):
    ids, errors = [], []

    def create():
        try:
            ids.append(new_job(session_factory, key="race", body_hash="h")[0].id)
        except Exception as error:  # pragma: no cover - the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1
    with session_factory() as session:
        assert session.query(Job).count() == 1


def test_pages_list_newest_first_without_gaps_or_repeats(session_factory):
    made = [new_job(session_factory)[0].id for _ in range(5)]
    seen, cursor = [], None
    with session_factory() as session:
        for expected_size in (2, 2, 1):
            page = jobs.list_jobs(session, cursor=cursor, limit=2)
            assert len(page.rows) == expected_size
            seen += [job.id for job in page.rows]
            cursor = page.next_cursor
    assert cursor is None
    assert seen == list(reversed(made))


def test_list_filters_by_status_and_experiment(session_factory):
    a = new_job(session_factory, experiment="a")[0]
    new_job(session_factory, experiment="b")
    with transaction(session_factory) as session:
        jobs.request_cancel(session, a.id)
    with session_factory() as session:
        assert [j.id for j in jobs.list_jobs(session, experiment="a").rows] == [a.id]
        assert [j.id for j in jobs.list_jobs(session, status="cancelled").rows] == [a.id]
        assert len(jobs.list_jobs(session, status="queued").rows) == 1


def test_a_bad_cursor_is_a_value_error(session_factory):
    with session_factory() as session, pytest.raises(ValueError, match="not a cursor"):
        jobs.list_jobs(session, cursor="garbage!")


def test_claim_takes_a_queued_job_once(session_factory):
    job, _ = new_job(session_factory)
    with transaction(session_factory) as session:
        claimed = jobs.claim(session, job.id, "w1", lease_seconds=60)
    with transaction(session_factory) as session:
        again = jobs.claim(session, job.id, "w2", lease_seconds=60)
    assert (claimed.status, claimed.attempts, claimed.lease_owner) == ("running", 1, "w1")
    assert again is None


def test_claim_takes_over_a_running_job_whose_lease_expired(session_factory):
    job, _ = new_job(session_factory)
    with transaction(session_factory) as session:
        jobs.claim(session, job.id, "dead", lease_seconds=0.05)
    time.sleep(0.1)
    with transaction(session_factory) as session:
        taken = jobs.claim(session, job.id, "alive", lease_seconds=60)
    assert (taken.lease_owner, taken.attempts) == ("alive", 2)


def test_heartbeat_records_progress_and_reports_a_cancel_request(session_factory):
    job, _ = new_job(session_factory)
    with transaction(session_factory) as session:
        jobs.claim(session, job.id, "w", lease_seconds=60)
    with transaction(session_factory) as session:
        beat = jobs.heartbeat(session, job.id, "w", 60, epoch=3, cost=0.5)
    assert beat == jobs.Heartbeat(still_owner=True, cancel_requested=False)
    with transaction(session_factory) as session:
        jobs.request_cancel(session, job.id)
    with transaction(session_factory) as session:
        beat = jobs.heartbeat(session, job.id, "w", 60, epoch=4, cost=0.4)
        stranger = jobs.heartbeat(session, job.id, "someone else", 60, epoch=4, cost=0.4)
    assert beat.cancel_requested and not stranger.still_owner
    with session_factory() as session:
        stored = session.get(Job, job.id)
        assert (stored.progress_epoch, stored.latest_cost) == (4, 0.4)


def test_finish_ends_the_job_with_its_events_in_order(session_factory):
    job, _ = new_job(session_factory)
    with transaction(session_factory) as session:
        jobs.claim(session, job.id, "w", lease_seconds=60)
    with transaction(session_factory) as session:
        assert jobs.finish(session, job.id, "w", "succeeded", metrics={"cost": 0.1})
    with transaction(session_factory) as session:
        assert not jobs.finish(session, job.id, "w", "failed", error="too late")
    with session_factory() as session:
        stored = session.get(Job, job.id)
        assert (stored.status, stored.metrics, stored.lease_owner) == (
            "succeeded", {"cost": 0.1}, None,
        )  # fmt: skip
        assert stored.finished_at.tzinfo is not None
        transitions = [(e.from_status, e.to_status) for e in jobs.events_of(session, job.id)]
    assert transitions == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]


def test_cancelling_a_queued_job_ends_it_at_once_and_it_cannot_be_claimed(session_factory):
    job, _ = new_job(session_factory)
    with transaction(session_factory) as session:
        assert jobs.request_cancel(session, job.id).status == "cancelled"
    with transaction(session_factory) as session:
        assert jobs.claim(session, job.id, "w", lease_seconds=60) is None
