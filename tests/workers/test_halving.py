"""A sweep's successive halving in the worker: run_job stops a trial that falls behind at a rung
(cancelled with the reason, its run KILLED and tagged) and trains a promoted one on, in the
same run, without a repeated step."""

import time

from mlflow.entities import RunStatus

from store import sweeps
from store.db import transaction
from tests.workers.helpers import FACES_LOGREG, get_job, statuses, with_experiment
from workers.run import run_job

OWNER = "test-worker/1"
EPOCHS = 40  # judged after 20 epochs, the one rung before the end


def models_of(client, run) -> list:
    found = client.search_logged_models([run.info.experiment_id])
    return [model for model in found if model.source_run_id == run.info.run_id]


def eventually(check, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def trial_spec(base: dict, learning_rate: float) -> dict:
    return {**base, "training": {**base["training"], "learning_rate": learning_rate}}


def test_a_trial_behind_at_a_rung_stops_and_a_promoted_one_trains_on_in_its_run(
    settings, session_factory, mlflow_client
):
    base = with_experiment(FACES_LOGREG)
    base["training"]["epochs"] = EPOCHS
    rates = [0.005, 1e-6, 0.01]  # the second learns nothing by the rung: its cost is the worst
    with transaction(session_factory) as session:
        made = sweeps.create_sweep(
            session,
            request={"base": base, "space": {"training.learning_rate": rates},
                     "halving": {"eta": 2, "rungs": [20]}},
            trial_specs=[trial_spec(base, rate) for rate in rates],
            objective=("cost", "min"),
            idempotency_key=None, request_sha256="0" * 64, token_fingerprint=None,
        )  # fmt: skip
        first, behind, better = (trial.id for trial in made.trials)

    # One after another, as one worker takes them: each is judged against those before it.
    assert run_job(first, settings, session_factory, OWNER) == "succeeded"  # alone at the rung
    assert run_job(behind, settings, session_factory, OWNER) == "cancelled"  # 2nd of 2: stops
    assert run_job(better, settings, session_factory, OWNER) == "succeeded"  # 1st of 3: goes on

    stopped = get_job(session_factory, behind)
    assert stopped.error.startswith("stopped at rung 1 (epoch 20): cost ")
    assert stopped.error.endswith(", rank 2 of 2")
    assert statuses(session_factory, behind)[-1] == ("running", "cancelled", stopped.error)
    run = mlflow_client.get_run(stopped.mlflow_run_id)
    assert run.info.status == RunStatus.to_string(RunStatus.KILLED)
    assert run.data.tags["gradq.stopped_at_rung"] == "1"
    assert run.data.tags["gradq.rung_rank"] == "2 of 2"
    assert float(run.data.tags["gradq.rung_value"]) > float(run.data.tags["gradq.rung_cutoff"])
    assert run.data.tags["gradq.error"] == stopped.error
    steps = [m.step for m in mlflow_client.get_metric_history(stopped.mlflow_run_id, "cost")]
    assert sorted(steps) == list(range(20))
    # The stopped trial leaves no model behind (deleted once its uploads are over).
    assert eventually(lambda: models_of(mlflow_client, run) == [])

    for job_id in (first, better):
        job = get_job(session_factory, job_id)
        assert job.progress_epoch == EPOCHS
        assert len(models_of(mlflow_client, mlflow_client.get_run(job.mlflow_run_id))) == 1
        history = mlflow_client.get_metric_history(job.mlflow_run_id, "cost")
        assert sorted(m.step for m in history) == list(range(EPOCHS))  # continuous, no repeat

    with transaction(session_factory) as session:
        verdicts = sweeps.rungs_of(session, made.sweep.id)
        found = {job: [(r.rung, r.promoted, r.rank, r.reached) for r in rows]
                 for job, rows in verdicts.items()}  # fmt: skip
    assert found == {
        first: [(1, True, 1, 1)],
        behind: [(1, False, 2, 2)],
        better: [(1, True, 1, 3)],
    }
