"""/metrics: the queue as SQL and the broker see it (jobs by state, depths, waits, durations,
retries, requeues, unsent metric values), parsed with prometheus_client's own parser and checked
against real rows, real Redis and the filesystem broker."""

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from store.tables import Job, JobEvent, Sweep, SweepRung
from tests.servers import free_port

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def scrape(client, headers=None) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def job(job_id: str, status: str, *, wait=None, lasted=None, attempts=0, **columns) -> Job:
    started = T0 + timedelta(seconds=wait) if wait is not None else None
    finished = started + timedelta(seconds=lasted) if lasted is not None else None
    return Job(
        id=job_id, experiment="e", status=status, spec={}, dataset="faces", epochs=10,
        attempts=attempts, max_attempts=3, cancel_requested=False, created_at=T0,
        started_at=started, finished_at=finished, **columns,
    )  # fmt: skip


def insert_jobs(rows) -> None:
    with rows() as session, session.begin():
        session.add_all([
            job("q1", "queued"),
            job("q2", "queued", attempts=1, handoffs=1),  # handed back once
            job("r1", "running", wait=40, attempts=2, metrics_unsent=7),
            job("s1", "succeeded", wait=3, lasted=12, attempts=1, metrics_unsent=99),
            job("f1", "failed", wait=0.2, lasted=700, attempts=3),
            job("c1", "cancelled"),
        ])  # fmt: skip
        session.flush()
        for job_id in ("q2", "r1"):  # a hand-back and an expired lease
            session.add(JobEvent(job_id=job_id, from_status="running", to_status="queued"))
        session.add(JobEvent(job_id="s1", from_status="queued", to_status="running"))


def insert_trials_at_a_rung(rows) -> None:
    """A sweep's trials at rung 1: w1 waiting there (queued, not claimable), p1 promoted and
    queued again, x1 stopped."""
    with rows() as session, session.begin():
        session.add(Sweep(id="sw", experiment="e", request={}, objective_metric="val_accuracy",
                          objective_goal="max"))  # fmt: skip
        session.add_all([job("w1", "queued", attempts=1, handoffs=1),
                         job("p1", "queued", attempts=1, handoffs=1),
                         job("x1", "cancelled", attempts=1)])  # fmt: skip
        session.flush()
        verdicts = {"w1": (False, True), "p1": (True, False), "x1": (False, False)}
        for job_id, (promoted, waiting) in verdicts.items():
            verdict = {"promoted": promoted, "waiting": waiting, "rank": 1, "reached": 3}
            session.add(SweepRung(sweep_id="sw", rung=1, job_id=job_id, epoch=9, value=0.5,
                                  **verdict))  # fmt: skip


def test_jobs_by_state_depth_histograms_retries_and_spool_match_the_rows(make_client, rows):
    client = make_client(broker_url="", metrics_cache_seconds=0)
    insert_jobs(rows)

    samples = scrape(client)

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    states = {"queued": 2, "running": 1, "succeeded": 1, "failed": 1, "cancelled": 1}
    for state, count in states.items():
        assert value("gradq_jobs", state=state) == count
    assert value("gradq_queue_depth") == 2
    # Waits of the three jobs that started: 40, 3 and 0.2 s.
    assert value("gradq_job_queue_wait_seconds_count") == 3
    assert value("gradq_job_queue_wait_seconds_sum") == pytest.approx(43.2, abs=1e-3)
    for le, count in (("0.1", 0), ("0.5", 1), ("2.5", 1), ("5.0", 2), ("30.0", 2), ("60.0", 3)):
        assert value("gradq_job_queue_wait_seconds_bucket", le=le) == count, le
    assert value("gradq_job_queue_wait_seconds_bucket", le="+Inf") == 3
    # Durations of the two that finished: 12 and 700 s.
    assert value("gradq_job_duration_seconds_count") == 2
    assert value("gradq_job_duration_seconds_sum") == pytest.approx(712, abs=1e-3)
    for le, count in (("10.0", 0), ("30.0", 1), ("600.0", 1), ("1800.0", 2)):
        assert value("gradq_job_duration_seconds_bucket", le=le) == count, le
    assert value("gradq_jobs_retried") == 2  # r1 and f1
    assert value("gradq_job_attempts_total") == 7
    assert value("gradq_job_requeues_total") == 2
    assert value("gradq_job_handoffs_total") == 1
    assert value("gradq_mlflow_spool_values") == 7  # the running job's only
    assert value("gradq_database_up") == 1


def test_a_trial_waiting_at_a_rung_is_queued_but_not_in_the_queues_depth(make_client, rows):
    client = make_client(broker_url="", metrics_cache_seconds=0)
    insert_jobs(rows)
    insert_trials_at_a_rung(rows)

    samples = scrape(client)

    assert samples[("gradq_jobs", (("state", "queued"),))] == 4  # q1, q2, w1, p1
    assert samples[("gradq_jobs_waiting_at_rung", ())] == 1
    assert samples[("gradq_queue_depth", ())] == 3  # what a worker may claim


def test_the_broker_depth_is_the_length_of_celerys_queue_in_redis(client, redis_queue):
    for _ in range(3):
        assert client.post("/v1/jobs", json={"dataset": {"name": "faces"}}).status_code == 202

    samples = scrape(client)

    assert samples[("gradq_broker_up", ())] == 1
    assert samples[("gradq_broker_queue_depth", ())] == 3 == redis_queue.client.llen("celery")
    assert samples[("gradq_queue_depth", ())] == 3


def test_the_broker_depth_counts_the_filesystem_brokers_messages(make_client):
    client = make_client(broker_url="", metrics_cache_seconds=0)
    for _ in range(2):
        client.post("/v1/jobs", json={"dataset": {"name": "faces"}})
    queue = client.app.state.settings.broker_folder / "queue"
    (queue / ".half-written.celery.msg.tmp").write_bytes(b"")  # not a message yet

    samples = scrape(client)

    assert samples[("gradq_broker_queue_depth", ())] == 2
    assert samples[("gradq_broker_up", ())] == 1


def test_a_broker_that_does_not_answer_is_broker_up_0_never_a_500(make_client):
    client = make_client(broker_url=f"redis://127.0.0.1:{free_port()}/0")

    samples = scrape(client)

    assert samples[("gradq_broker_up", ())] == 0
    assert ("gradq_broker_queue_depth", ()) not in samples
    assert samples[("gradq_jobs", (("state", "queued"),))] == 0


def test_scrapes_within_the_cache_period_reuse_the_last_computation(make_client, rows):
    cached = make_client(broker_url="", metrics_cache_seconds=3600)
    fresh = make_client(broker_url="", metrics_cache_seconds=0)
    assert scrape(cached)[("gradq_jobs", (("state", "queued"),))] == 0

    insert_jobs(rows)

    assert scrape(cached)[("gradq_jobs", (("state", "queued"),))] == 0
    assert scrape(fresh)[("gradq_jobs", (("state", "queued"),))] == 2


def test_metrics_need_the_bearer_token_when_tokens_are_configured(make_client):
    client = make_client(broker_url="", api_tokens=["tok1"])

    assert client.get("/metrics").status_code == 401
    assert scrape(client, {"Authorization": "Bearer tok1"})[("gradq_broker_up", ())] == 1


def test_the_grafana_dashboard_queries_only_metrics_that_metrics_exposes(make_client, rows):
    import json
    import re
    from pathlib import Path

    dashboard = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
    panels = json.loads(dashboard.read_text())["panels"]
    queried = {
        name
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"\bgradq_[a-z_]+", target["expr"])
    }
    client = make_client(broker_url="", metrics_cache_seconds=0)
    insert_jobs(rows)
    client.post("/v1/jobs", json={"dataset": {"name": "faces"}})
    response = client.get("/metrics")
    exposed = {
        sample.name
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }

    assert queried, "the dashboard queries nothing"
    assert queried <= exposed, queried - exposed
