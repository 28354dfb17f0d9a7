"""Registering a trained model in MLflow's model registry under the spec's ``register_as``,
and moving the alias ``champion`` to the best version (DESIGN.md section 7): a user loads
``models:/NAME@champion`` and always gets the best model trained under that name so far.

Each version carries what it is ranked by as tags (the metric, its goal and value) and the job
it came from; the champion is the best of all the name's versions ranked by the same metric,
worked out anew at each registration, so two jobs registering at once still agree on it.
"""

import logging
import math
from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"


@dataclass(frozen=True)
class Ranking:
    metric: str  # a final metric of the job: val_accuracy, train_accuracy or cost
    goal: str  # "max" or "min"
    value: float


def job_ranking(metrics: dict) -> Ranking:
    """What a single job's model is ranked by: its validation accuracy when it has a
    validation split, else its final cost."""
    value = metrics.get("val_accuracy")
    if value is not None and math.isfinite(value):
        return Ranking("val_accuracy", "max", value)
    return Ranking("cost", "min", metrics["cost"])


def register(
    client: MlflowClient, name: str, model_id: str, run_id: str, job_id: str, ranking: Ranking
) -> ModelVersion:
    """Register the LoggedModel ``model_id`` as a version of ``name`` (once per job: a retried
    call finds its version) and give ``champion`` to the best version."""
    try:
        client.create_registered_model(name, description="Registered by gradq (register_as).")
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    versions = client.search_model_versions(f"name = '{name}'")
    mine = next((v for v in versions if v.tags.get("gradq.job_id") == job_id), None)
    if mine is None:
        tags = {
            "gradq.job_id": job_id,
            "gradq.metric": ranking.metric,
            "gradq.goal": ranking.goal,
            "gradq.value": repr(ranking.value),
        }
        mine = client.create_model_version(
            name, f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
        )
        versions = [*versions, mine]
    best = _best(versions, ranking)
    client.set_registered_model_alias(name, CHAMPION, best.version)
    log.info("registered %s version %s; champion: version %s", name, mine.version, best.version)
    return mine


def _best(versions: list[ModelVersion], ranking: Ranking) -> ModelVersion:
    """The best version ranked by ``ranking``'s metric (the earliest of a tie); versions
    ranked by another metric, or made by hand without the tags, do not compete."""
    sign = 1.0 if ranking.goal == "max" else -1.0
    ranked = [
        (sign * float(v.tags["gradq.value"]), -int(v.version), v)
        for v in versions
        if v.tags.get("gradq.metric") == ranking.metric and "gradq.value" in v.tags
    ]
    return max(ranked, key=lambda item: item[:2])[2]
