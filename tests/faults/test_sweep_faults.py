"""A sweep with successive halving whose trials' processes are killed: no trial is lost, none
runs twice, none is judged twice at a rung, none is left waiting at one, and each is its
sweep's child in MLflow."""

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
    # The second trial is killed before its rung; then the first to run past the rung (its
    # verdict stored: promoted), whichever it is.
    kill_job_process(stack.wait_until_running(ids[1], min_epoch=RUNG // 3, timeout=120))
    past = stack.wait_until_any_running(ids, min_epoch=RUNG + 50, timeout=240)
    kill_job_process(past)

    counts, jobs = stack.report(ids, timeout=300)

    assert (counts.lost, counts.failed, counts.duplicate_runs, counts.bad_curves) == (0, 0, 0, 0)
    assert counts.succeeded + counts.cancelled == len(ids) and counts.succeeded >= 1
    assert jobs[past.id].attempts >= 2 and jobs[ids[1]].attempts >= 2
    with transaction(stack.sql) as session:
        verdicts = {row.job_id: row for row in session.scalars(
            select(SweepRung).where(SweepRung.sweep_id == sweep["id"]))}  # fmt: skip
    # Each trial reached the rung once (a retry gets its stored verdict), and none waits on.
    assert sorted(verdicts) == sorted(ids)
    assert not any(row.waiting for row in verdicts.values())
    assert verdicts[past.id].promoted
    stopped = {job_id for job_id, row in verdicts.items() if not row.promoted}
    assert stopped == {job.id for job in jobs.values() if job.status == "cancelled"}
    assert len(stopped) <= len(ids) - len(ids) // 2  # at least the top half went on
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
