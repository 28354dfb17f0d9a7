"""A sweep's successive halving in the worker: run_job hands back a trial that waits at a rung,
resumes it from its checkpoint in the same run once a later arrival promotes it, trains a
promoted one on, and stops the rest once the rung is complete (cancelled with the reason, its
run KILLED and tagged)."""

import time
from types import SimpleNamespace

from mlflow.entities import RunStatus

from store import jobs, rungs, sweeps
from store.db import transaction
from tests.workers.helpers import FACES_LOGREG, get_job, statuses, with_experiment
from workers import halving, reconciler
from workers.attempt import AttemptContext
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


def test_trials_wait_at_a_rung_until_promoted_resume_in_their_run_and_the_rest_stop(
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
        first, behind, best = (trial.id for trial in made.trials)
    sent = []

    def run(job_id: str) -> str | None:
        return run_job(job_id, settings, session_factory, OWNER, send=sent.append)

    # One after another, as one worker takes them.
    assert run(first) == "queued"  # alone at the rung: 1 // 2 go on, so it waits
    assert sent == []
    assert run(behind) == "queued"  # two arrived: first, the better, is promoted and sent
    assert sent == [first]
    assert run(best) == "succeeded"  # the rung is complete: the best goes on, behind stops
    assert run(first) == "succeeded"  # resumed from its checkpoint at the rung

    stopped = get_job(session_factory, behind)
    assert stopped.error.startswith("stopped at rung 1 (epoch 20): cost ")
    assert stopped.error.endswith(", rank 3 of 3")
    (_, paused, waited), (_, ended, why) = statuses(session_factory, behind)[-2:]
    assert (paused, ended, why) == ("queued", "cancelled", stopped.error)
    assert waited.startswith("waiting at rung 1 (epoch 20): cost ")
    assert waited.endswith(", rank 2 of 2 so far")
    assert sent == [first]  # a stopped trial is never sent again
    # Its run, SCHEDULED while it waited, is ended by the reconciler with the verdict as tags.
    assert reconciler.close_open_runs(session_factory, mlflow_client) == [behind]
    run_info = mlflow_client.get_run(stopped.mlflow_run_id)
    assert run_info.info.status == RunStatus.to_string(RunStatus.KILLED)
    assert run_info.data.tags["gradq.stopped_at_rung"] == "1"
    assert run_info.data.tags["gradq.rung_rank"] == "3 of 3"
    assert run_info.data.tags["gradq.error"] == stopped.error
    steps = [m.step for m in mlflow_client.get_metric_history(stopped.mlflow_run_id, "cost")]
    assert sorted(steps) == list(range(20))
    assert models_of(mlflow_client, run_info) == []  # made only past the last rung: never

    resumed = get_job(session_factory, first)
    assert (resumed.attempts, resumed.handoffs) == (2, 1)  # a pause uses up no attempt
    for job_id in (first, best):
        job = get_job(session_factory, job_id)
        assert job.progress_epoch == EPOCHS
        run_info = mlflow_client.get_run(job.mlflow_run_id)
        assert run_info.info.status == RunStatus.to_string(RunStatus.FINISHED)
        assert len(models_of(mlflow_client, run_info)) == 1
        history = mlflow_client.get_metric_history(job.mlflow_run_id, "cost")
        assert sorted(m.step for m in history) == list(range(EPOCHS))  # continuous, no repeat

    with transaction(session_factory) as session:
        verdicts = rungs.rungs_of(session, made.sweep.id)
        found = {job: [(r.rung, rungs.verdict_of(r).state, r.rank, r.reached) for r in rows]
                 for job, rows in verdicts.items()}  # fmt: skip
    assert found == {
        first: [(1, "promoted", 1, 2)],
        behind: [(1, "stopped", 3, 3)],
        best: [(1, "promoted", 1, 3)],
    }


def test_only_a_trial_paused_at_a_rung_is_sent_again_at_once(settings, session_factory):
    base = with_experiment(FACES_LOGREG)
    base["training"]["epochs"] = EPOCHS
    with transaction(session_factory) as session:
        made = sweeps.create_sweep(
            session,
            request={"base": base, "space": {}, "halving": {"eta": 2, "rungs": [20]}},
            trial_specs=[base, base], objective=("cost", "min"),
            idempotency_key=None, request_sha256="0" * 64, token_fingerprint=None,
        )  # fmt: skip
        trial = made.trials[0].id
        assert jobs.claim(session, trial, OWNER, 60) is not None
    with transaction(session_factory) as session:  # handed back, no message, not waiting
        assert jobs.release(session, trial, OWNER, "handed back") == "queued"
    sent = []
    attempt = SimpleNamespace(job_id=trial, sweep_id=made.sweep.id)
    context = AttemptContext(attempt, settings, session_factory, None, None, send=sent.append)

    halving.after_attempt(context, "queued")  # a stopping worker's hand-back
    assert sent == []  # the reconciler sends it, once the worker has stopped taking messages
    context.paused_at_rung = True
    halving.after_attempt(context, "queued")  # a pause, whose trial was promoted meanwhile
    assert sent == [trial]
