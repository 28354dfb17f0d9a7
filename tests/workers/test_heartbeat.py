"""The heartbeat: one statement a beat on a connection it keeps (again after losing it), what
a beat reports, and a worker that cannot reach SQL for a lease's time stops as if its lease
were lost (the reconciler may have given the job to another worker by then)."""

import time

import pytest
from sqlalchemy import event

import store.jobs
from settings import Settings
from store.db import make_engine, make_session_factory, transaction
from store.tables import Job
from tests.workers.helpers import FACES_LOGREG, create_job, with_experiment
from workers.heartbeat import Heartbeat


def test_a_heartbeat_that_fails_for_a_lease_counts_the_lease_as_lost(tmp_path):
    # A database nobody listens on: every beat fails at once.
    unreachable = make_session_factory(
        make_engine("postgresql+psycopg2://nobody@127.0.0.1:9/none?connect_timeout=1")
    )
    settings = Settings(home=tmp_path, lease_seconds=1.0, progress_seconds=0.1)
    heartbeat = Heartbeat(unreachable, "0" * 32, "me/1", settings).start()
    try:
        assert heartbeat.stop_reason() is None  # a missed beat or two is no lost lease
        deadline = time.monotonic() + 10
        while heartbeat.stop_reason() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heartbeat.stop_reason() == "lost"
        assert heartbeat.beats == 0
    finally:
        heartbeat.close(final_beat=False)


def claimed_job(session_factory) -> str:
    job_id = create_job(session_factory, with_experiment(FACES_LOGREG))
    with transaction(session_factory) as session:
        store.jobs.claim(session, job_id, "me/1", lease_seconds=60)
    return job_id


def test_beats_are_one_statement_each_on_one_kept_connection(session_factory, tmp_path):
    job_id = claimed_job(session_factory)
    engine = session_factory.kw["bind"]
    checkouts, statements = [], []
    event.listen(engine, "checkout", lambda *args: checkouts.append(1))
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    # A period long enough that only the explicit beats below happen.
    heartbeat = Heartbeat(
        session_factory, job_id, "me/1", Settings(home=tmp_path, progress_seconds=3600)
    )
    heartbeat.start()
    for epoch in range(3):
        heartbeat.on_epoch_end(epoch, {"cost": 1.0 / (epoch + 1)})
        heartbeat.beat()
    heartbeat.close()

    assert heartbeat.beats == 5  # start, three, close
    assert len(checkouts) == 1
    beats = [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    assert len(beats) == len(statements) == 5  # no BEGIN, SELECT or COMMIT around them
    with session_factory() as session:
        stored = session.get(Job, job_id)
        assert (stored.progress_epoch, stored.latest_cost) == (3, 1.0 / 3)


def test_a_beat_after_the_kept_connection_died_reconnects(postgres_url, tmp_path):
    engine = make_engine(postgres_url)
    session_factory = make_session_factory(engine)
    job_id = claimed_job(session_factory)
    # A period well within the lease (a failed beat must not count as a lost lease), and
    # longer than the test: only the explicit beats happen.
    heartbeat = Heartbeat(
        session_factory, job_id, "me/1", Settings(home=tmp_path, progress_seconds=30)
    )
    heartbeat.start()  # opens the connection the heartbeat keeps
    try:
        # Autocommit: in a transaction, pg_stat_activity would be read once, at its start.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as other:
            ended = other.exec_driver_sql(  # every other connection to the database ends
                "SELECT count(*) FROM pg_stat_activity, pg_terminate_backend(pid) "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).scalar_one()
            assert ended >= 1
            others = (
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            deadline = time.monotonic() + 10  # pg_terminate_backend only signals
            while other.exec_driver_sql(others).scalar_one() and time.monotonic() < deadline:
                time.sleep(0.01)
        heartbeat.beat()  # fails, and drops the dead connection
        assert heartbeat.beats == 1 and heartbeat.stop_reason() is None
        heartbeat.beat()
        assert heartbeat.beats == 2 and heartbeat.stop_reason() is None
    finally:
        heartbeat.close()
        engine.dispose()


def test_a_beat_reports_a_cancel_and_a_lease_taken_over(session_factory, tmp_path):
    job_id = claimed_job(session_factory)
    heartbeat = Heartbeat(
        session_factory, job_id, "me/1", Settings(home=tmp_path, progress_seconds=3600)
    )
    heartbeat.start()
    try:
        with transaction(session_factory) as session:
            store.jobs.request_cancel(session, job_id)
        heartbeat.beat()
        assert heartbeat.stop_reason() == "cancelled"
        with transaction(session_factory) as session:
            session.get(Job, job_id).lease_owner = "someone else"
        heartbeat.beat()
        assert heartbeat.stop_reason() == "lost"
    finally:
        heartbeat.close(final_beat=False)


class FakeSpool:
    """A metrics buffer's depth, as the heartbeat reads it."""

    spooled = 0


def test_each_beat_records_how_many_metric_values_the_spool_holds(session_factory, tmp_path):
    job_id = claimed_job(session_factory)
    heartbeat = Heartbeat(
        session_factory, job_id, "me/1", Settings(home=tmp_path, progress_seconds=3600)
    ).start()
    with session_factory() as session:
        assert session.get(Job, job_id).metrics_unsent is None  # no buffer yet
    spool = FakeSpool()
    heartbeat.spool = spool
    for depth in (120, 45):
        spool.spooled = depth
        heartbeat.beat()
        with session_factory() as session:
            assert session.get(Job, job_id).metrics_unsent == depth
    heartbeat.close(final_beat=False)


def test_a_metrics_buffer_counts_the_values_it_holds_for_mlflow():
    from workers.metrics_spool import MetricsBuffer

    def refuse(run_id, rows):
        raise ConnectionError("MLflow is down")

    buffer = MetricsBuffer(None, "run", flush_seconds=3600, send=refuse, max_values=1000)
    buffer.add(0, {"cost": 1.0, "train_accuracy": 0.5})
    buffer.add(1, {"cost": 0.9})
    assert buffer.spooled == 3
    with pytest.raises(ConnectionError):
        buffer.flush()
    assert buffer.spooled == 3  # unsent, still held
    buffer.discard()
