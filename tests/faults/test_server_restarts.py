"""Servers that go away and come back lose no job and no metric: Redis restarting empty,
MLflow down for 30 s, PostgreSQL restarting under load."""

import collections
import threading
import time

import httpx
import pytest
import redis
from mlflow.entities import LoggedModelStatus

from store.migrate import upgrade
from tests.faults.harness import mlp_spec
from tests.faults.servers import PrivatePostgres

pytestmark = pytest.mark.slow


def test_a_redis_restart_that_empties_the_queue_loses_none_of_32_jobs(make_stack, redis_server):
    stack = make_stack(workers=1, concurrency=2)
    running = [stack.submit(mlp_spec(stack.experiment, 2000, seed=n)) for n in range(2)]
    queued = [stack.submit(mlp_spec(stack.experiment, 100, seed=n)) for n in range(30)]
    for job_id in running:
        stack.wait_until_running(job_id, min_epoch=50)
    assert {job.status for job in stack.jobs(queued).values()} == {"queued"}

    redis_server.kill()  # no persistence: every queued message is gone with it
    redis_server.start()
    assert redis.Redis.from_url(redis_server.url).llen("celery") == 0

    counts, _ = stack.report(running + queued, timeout=240)

    assert (counts.succeeded, counts.lost, counts.duplicate_runs, counts.bad_curves) == (
        32, 0, 0, 0,
    )  # fmt: skip


def test_mlflow_down_for_30_s_mid_training_loses_no_job_and_no_metric(make_stack, mlflow_server):
    stack = make_stack(workers=1, concurrency=2)
    ids = [stack.submit(mlp_spec(stack.experiment, 3000, seed=n)) for n in range(2)]
    for job_id in ids:
        stack.wait_until_running(job_id, min_epoch=100)

    mlflow_server.stop()
    ids.append(stack.submit(mlp_spec(stack.experiment, 300, seed=2)))  # queued meanwhile
    time.sleep(30)
    assert {job.status for job in stack.jobs(ids[:2]).values()} == {"running"}
    mlflow_server.start()

    counts, jobs = stack.report(ids, timeout=240)

    assert (counts.succeeded, counts.lost, counts.duplicate_runs, counts.bad_curves) == (
        3, 0, 0, 0,
    )  # fmt: skip
    for job in jobs.values():
        run_id = job.mlflow_run_id
        assert stack.mlflow.get_run(run_id).info.status == "FINISHED"
        for key in ("train_accuracy", "val_accuracy", "learning_rate", "grad_norm.W3"):
            steps = sorted(m.step for m in stack.mlflow.get_metric_history(run_id, key))
            assert steps == list(range(job.epochs)), key
        artifacts = {a.path for a in stack.mlflow.list_artifacts(run_id)}
        assert {"weights.npz", "cost_curve.png"} <= artifacts
        [output] = stack.mlflow.get_run(run_id).outputs.model_outputs  # one LoggedModel
        assert stack.mlflow.get_logged_model(output.model_id).status == LoggedModelStatus.READY


def test_a_postgresql_restart_under_load_loses_no_accepted_job_and_answers_503(make_stack):
    postgres = PrivatePostgres()
    try:
        postgres.start()
        upgrade(postgres.url)
        stack = make_stack(workers=1, concurrency=2, database_url=postgres.url)
        answers: list[tuple[str, int, str | None]] = []  # (phase, status, job id)
        phase = ["up"]
        stop = threading.Event()

        def submit_steadily() -> None:
            with httpx.Client(base_url=stack.api_url, timeout=10) as client:
                n = 0
                while not stop.is_set():
                    spec = mlp_spec(stack.experiment, 100, seed=n)
                    response = stack.post(spec, client=client)
                    job_id = response.json().get("id") if response.status_code == 202 else None
                    answers.append((phase[0], response.status_code, job_id))
                    n += 1
                    time.sleep(0.25)

        load = threading.Thread(target=submit_steadily)
        load.start()
        time.sleep(2)
        postgres.stop("fast")
        phase[0] = "down"
        time.sleep(5)
        phase[0] = "restarting"
        postgres.start()
        time.sleep(3)
        phase[0] = "recovered"
        time.sleep(2)
        stop.set()
        load.join()

        by_phase = collections.defaultdict(collections.Counter)
        for when, status, _ in answers:
            by_phase[when][status] += 1
        print(f"answers by phase: {dict(by_phase)}")
        assert {status for _, status, _ in answers} <= {202, 503}  # never a 500
        assert by_phase["down"][503] >= 1
        assert set(by_phase["recovered"]) == {202}  # recovered by itself
        accepted = [job_id for _, status, job_id in answers if status == 202]
        counts, _ = stack.report(accepted, timeout=240)
        assert (counts.succeeded, counts.lost, counts.duplicate_runs) == (len(accepted), 0, 0)
    finally:
        postgres.remove()
