"""A sweep with successive halving whose trials' processes are killed: no trial is lost, none
runs twice, none is judged twice at a rung, and each is its sweep's child in MLflow."""

import pytest
from sqlalchemy import select

from store.db import transaction
from store.tables import SweepRung
from tests.faults.harness import kill_job_process, mlp_spec

pytestmark = pytest.mark.slow

EPOCHS, RUNG = 900, 300


def test_sigkill_mid_sweep_loses_no_trial_runs_none_twice_and_judges_none_twice(make_stack):
    stack = make_stack(workers=1, concurrency=2)
    request = {
        "base": mlp_spec(stack.experiment, EPOCHS),
        "space": {"training.learning_rate": [0.2, 0.1, 0.05, 0.02, 0.01, 0.005]},
        "halving": {"eta": 2, "rungs": [RUNG]},
    }
    made = stack.http.post("/v1/sweeps", json=request)
    assert made.status_code == 202, made.text
    sweep = made.json()
    ids = [trial["job_id"] for trial in sweep["trials"]]
    # The first trial is killed once past its rung (its verdict stored), the second before it.
    kill_job_process(stack.wait_until_running(ids[0], min_epoch=RUNG + 50, timeout=120))
    kill_job_process(stack.wait_until_running(ids[1], min_epoch=RUNG // 3, timeout=120))

    counts, jobs = stack.report(ids, timeout=300)

    assert (counts.lost, counts.failed, counts.duplicate_runs, counts.bad_curves) == (0, 0, 0, 0)
    assert counts.succeeded + counts.cancelled == len(ids) and counts.succeeded >= 1
    assert jobs[ids[0]].attempts >= 2 and jobs[ids[1]].attempts >= 2
    with transaction(stack.sql) as session:
        verdicts = session.scalars(select(SweepRung).where(SweepRung.sweep_id == sweep["id"]))
        reached = sorted(row.reached for row in verdicts)
    assert reached == list(range(1, len(ids) + 1))  # each trial judged once at the rung
    for job in jobs.values():
        steps = stack.cost_steps(job)
        if job.status == "cancelled":  # stopped at the rung: its curve up to it, no repeat
            assert job.error.startswith(f"stopped at rung 1 (epoch {RUNG}): val_accuracy ")
            assert steps == list(range(RUNG))
        tags = stack.mlflow.get_run(job.mlflow_run_id).data.tags
        assert tags["gradq.sweep_id"] == sweep["id"]
    parents = {stack.mlflow.get_run(j.mlflow_run_id).data.tags["mlflow.parentRunId"]
               for j in jobs.values()}  # fmt: skip
    assert len(parents) == 1
