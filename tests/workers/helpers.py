"""Jobs for the worker tests: specs, rows, and reading them back."""

import math

import store.jobs
from contract.spec import JobSpec
from settings import Settings
from store.db import transaction
from store.tables import Job
from tests.servers import unique_name

# Small and quick, but long enough to learn: about 0.1 s of training each.
FACES_LOGREG = {
    "dataset": {"name": "faces"},
    "model": {"hidden_layers": [], "output": "sigmoid", "init": "zeros"},
    "training": {"optimizer": "gd", "learning_rate": 0.005, "epochs": 300, "seed": 1},
    "tags": {"owner": "ada"},
}
DIGITS_MLP = {
    "dataset": {"name": "digits"},
    "model": {"hidden_layers": [32], "hidden_activation": "relu", "output": "softmax"},
    "training": {
        "optimizer": "adam",
        "learning_rate": 0.01,
        "epochs": 20,
        "batch_size": 64,
        "seed": 1,
    },
}
LN2 = math.log(2)


def quick_settings(home, database_url: str, tracking_uri: str, **overrides) -> Settings:
    """Settings of the embedded stack in `home` that beat and flush within a test's patience."""
    quick = {"progress_seconds": 0.05, "metrics_flush_seconds": 0.2, "lease_seconds": 30}
    return Settings(
        home=home,
        database_url=database_url,
        mlflow_tracking_uri=tracking_uri,
        **(quick | overrides),
    )


def with_experiment(spec: dict, **changes) -> dict:
    """``spec`` in an experiment of its own, with top-level ``changes`` merged in."""
    merged = {**spec, "experiment": unique_name("test"), **changes}
    return JobSpec.model_validate(merged).model_dump(mode="json")


def create_job(session_factory, spec: dict) -> str:
    """Insert a queued job for ``spec`` (defaults filled in) and return its id."""
    full = JobSpec.model_validate(spec)
    with transaction(session_factory) as session:
        job, _ = store.jobs.create_job(
            session,
            spec=full.model_dump(mode="json"),
            experiment=full.experiment,
            name=full.name,
            dataset=full.dataset.name,
            epochs=full.training.epochs,
        )
        return job.id


def get_job(session_factory, job_id: str) -> Job:
    with transaction(session_factory) as session:
        return session.get(Job, job_id)


def statuses(session_factory, job_id: str) -> list[tuple[str | None, str, str | None]]:
    with transaction(session_factory) as session:
        events = store.jobs.events_of(session, job_id)
        return [(e.from_status, e.to_status, e.detail) for e in events]


def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    """Every file of the run's artifacts (under ``path``), folders walked."""
    found = set()
    for info in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, info.path) if info.is_dir else {info.path}
    return found
