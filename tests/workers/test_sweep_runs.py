"""A sweep's parent run: made by its first trial, each trial's run its child; brought up to date
by the reconciler's pass as trials end (trials.json, trials.md, cost_curves.png, the best
trial's metrics) and ended, with the best trial's params, once every trial has ended."""

import json
from pathlib import Path

from mlflow.entities import RunStatus

from store import sweeps
from store.db import transaction
from store.tables import Sweep
from tests.servers import unique_name
from tests.workers.helpers import FACES_LOGREG, artifact_paths, get_job, with_experiment
from workers import sweep_runs, tracking
from workers.run import run_job

OWNER = "test-worker/1"


def make_sweep(session_factory, rates: list[float], **request) -> tuple[str, list[str]]:
    base = with_experiment(FACES_LOGREG)
    base["training"]["epochs"] = 30
    specs = [{**base, "training": {**base["training"], "learning_rate": r}} for r in rates]
    with transaction(session_factory) as session:
        made = sweeps.create_sweep(
            session,
            request={"base": base, "space": {"training.learning_rate": rates}, **request},
            trial_specs=specs, objective=("cost", "min"),
            idempotency_key=None, request_sha256="0" * 64, token_fingerprint=None,
        )  # fmt: skip
        return made.sweep.id, [trial.id for trial in made.trials]


def sweep_row(session_factory, sweep_id: str) -> Sweep:
    with transaction(session_factory) as session:
        return session.get(Sweep, sweep_id)


def downloaded(client, run_id: str, name: str, tmp_path) -> str:
    return Path(client.download_artifacts(run_id, name, str(tmp_path))).read_text()


def test_trials_are_children_of_a_parent_run_that_shows_them_and_ends_with_the_last(
    settings, session_factory, mlflow_client, tmp_path
):
    name = unique_name("sweep-best")
    sweep_id, (slow, fast) = make_sweep(session_factory, [0.001, 0.01], register_as=name)

    assert run_job(slow, settings, session_factory, OWNER) == "succeeded"
    parent = sweep_row(session_factory, sweep_id).mlflow_run_id
    assert sweep_runs.sync_parents(session_factory, mlflow_client) == [sweep_id]
    assert sweep_runs.sync_parents(session_factory, mlflow_client) == []  # nothing new
    halfway = json.loads(downloaded(mlflow_client, parent, "trials.json", tmp_path))
    assert run_job(fast, settings, session_factory, OWNER) == "succeeded"
    assert sweep_runs.sync_parents(session_factory, mlflow_client) == [sweep_id]

    assert [t["status"] for t in halfway["trials"]] == ["succeeded", "queued"]
    assert halfway["status"] == "running" and halfway["best_job"] == slow
    for job_id in (slow, fast):
        tags = mlflow_client.get_run(get_job(session_factory, job_id).mlflow_run_id).data.tags
        assert (tags["mlflow.parentRunId"], tags["gradq.sweep_id"]) == (parent, sweep_id)
    run = mlflow_client.get_run(parent)
    assert run.data.tags["gradq.role"] == "sweep"
    assert run.info.status == RunStatus.to_string(RunStatus.FINISHED)
    assert sweep_row(session_factory, sweep_id).mlflow_closed_at is not None
    best = get_job(session_factory, fast)  # the higher rate: the lower cost after 30 epochs
    assert run.data.tags["gradq.best_job"] == fast
    assert run.data.params["training.learning_rate"] == "0.01"
    assert run.data.metrics["cost"] == best.metrics["cost"]
    assert {"trials.json", "trials.md", "cost_curves.png"} <= artifact_paths(mlflow_client, parent)
    final = json.loads(downloaded(mlflow_client, parent, "trials.json", tmp_path))
    assert final["status"] == "succeeded" and final["best_job"] == fast
    assert [t["job_id"] for t in final["trials"]] == [slow, fast]
    table = downloaded(mlflow_client, parent, "trials.md", tmp_path)
    assert f"| {fast[:8]} | 0.01 | succeeded | {best.metrics['cost']:.4g} |" in table
    png = mlflow_client.download_artifacts(parent, "cost_curves.png", str(tmp_path))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sweep_runs.sync_parents(session_factory, mlflow_client) == []  # ended: left alone
    # The best trial's model, registered once the sweep ended: the name's champion.
    champion = mlflow_client.get_model_version_by_alias(name, "champion")
    assert (champion.run_id, champion.tags["gradq.job_id"]) == (best.mlflow_run_id, fast)
    assert champion.tags["gradq.metric"] == "cost"


def test_a_parent_made_by_an_attempt_that_died_before_recording_it_is_found_not_made_again(
    session_factory, mlflow_client
):
    sweep_id, _ = make_sweep(session_factory, [0.01])
    experiment = sweep_row(session_factory, sweep_id).experiment
    orphan = tracking.start_run(
        mlflow_client, experiment=experiment, run_name="sweep",
        tags={"gradq.sweep_id": sweep_id, "gradq.role": "sweep"},
    ).run_id  # fmt: skip

    found = sweep_runs.parent_run(mlflow_client, session_factory, sweep_id)

    assert found == orphan == sweep_row(session_factory, sweep_id).mlflow_run_id
    assert sweep_runs.parent_run(mlflow_client, session_factory, sweep_id) == orphan


def test_of_two_parents_made_at_once_the_first_recorded_wins(session_factory):
    sweep_id, _ = make_sweep(session_factory, [0.01])
    with transaction(session_factory) as session:
        first = sweeps.record_parent_run(session, sweep_id, "a" * 32)
    with transaction(session_factory) as session:
        second = sweeps.record_parent_run(session, sweep_id, "b" * 32)
    assert first == second == "a" * 32
