"""A job's MLflow run, from its start to its end: one job is one run (names in DESIGN.md
section 7). Every call goes through ``MlflowClient``; nothing uses MLflow's fluent,
process-global active run, so several jobs never share state. Metrics go through
workers/metrics_spool.py, calls that may wait for MLflow through workers/mlflow_retry.py.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import mlflow.data
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source_registry import get_registered_sources
from mlflow.entities import DatasetInput, InputTag, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

# MLflow's limits for one log_batch call (mlflow/utils/validation.py).
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_DATASET_DIGEST = 36

# A job's outcome and the run status that records it.
RUN_STATUS = {
    "succeeded": RunStatus.to_string(RunStatus.FINISHED),
    "failed": RunStatus.to_string(RunStatus.FAILED),
    "cancelled": RunStatus.to_string(RunStatus.KILLED),
}

# Experiment ids by (tracking URI, name): looked up once per worker process, not once per job.
_experiment_ids: dict[tuple[str, str], str] = {}

# MLflow 3 UIs that pick an experiment's mode by its kind open one without this tag in their
# GenAI mode (traces, evaluations); tagged, in the machine-learning mode (runs, charts,
# artifacts). Later ones go by the link instead (service/schemas.py, MLFLOW_ML_MODE).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


# Experiments known to have a kind, by (tracking URI, id): checked once per worker process.
_kinds_known: set[tuple[str, str]] = set()


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, created if missing (by this worker or a racing one),
    and tagged as a model-development experiment if it has no kind."""
    key = (client.tracking_uri, name)
    if key in _experiment_ids:
        return _experiment_ids[key]
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            found = client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            _kinds_known.add((client.tracking_uri, found))
            _experiment_ids[key] = found
            return found
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment = client.get_experiment_by_name(name)  # another worker won
    if experiment.lifecycle_stage != "active":
        raise MlflowException(
            f"MLflow experiment {name!r} is deleted: restore it, or use another experiment name"
        )
    tag_kind(client, experiment.experiment_id, experiment.tags)
    _experiment_ids[key] = experiment.experiment_id
    return experiment.experiment_id


def tag_kind(client: MlflowClient, experiment: str, tags: Mapping[str, str] | None = None) -> None:
    """Tag the experiment (id) as a model-development one if it has no kind yet (made before
    gradq tagged its experiments, or by hand); ``tags``: its tags, if already read."""
    key = (client.tracking_uri, experiment)
    if key in _kinds_known:
        return
    if tags is None:
        tags = client.get_experiment(experiment).tags
    if EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(experiment, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    _kinds_known.add(key)


@dataclass(frozen=True)
class RunRef:
    experiment_id: str
    run_id: str
    artifact_uri: str = ""  # where its artifacts go (mlflow-artifacts:/...)


def start_run(
    client: MlflowClient,
    *,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    existing_run_id: str | None = None,
) -> RunRef:
    """A new RUNNING run, or ``existing_run_id`` (an earlier attempt's) set running again."""
    if existing_run_id is not None:
        run = client.get_run(existing_run_id)
        client.update_run(existing_run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        log_params_and_tags(client, existing_run_id, {}, tags)
        tag_kind(client, run.info.experiment_id)  # a job resumed in an experiment made before
        return RunRef(run.info.experiment_id, existing_run_id, run.info.artifact_uri)
    found = experiment_id(client, experiment)
    run = client.create_run(found, run_name=run_name, tags=dict(tags))
    return RunRef(found, run.info.run_id, run.info.artifact_uri)


def unrecorded_run(client: MlflowClient, experiment: str, job_id: str) -> str | None:
    """The run an earlier attempt of job ``job_id`` created in ``experiment`` but never
    recorded in SQL (it died, or SQL was away, between the two), if any: the oldest run tagged
    with the job's id. A later attempt continues it rather than start a second run."""
    runs = client.search_runs(
        [experiment_id(client, experiment)],
        filter_string=f"tags.`gradq.job_id` = '{job_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def log_params_and_tags(
    client: MlflowClient, run_id: str, params: Mapping[str, str], tags: Mapping[str, str]
) -> None:
    """Params and tags in as few log_batch calls as MLflow's limits allow (one, usually)."""
    param_list = [Param(k, str(v)) for k, v in params.items()]
    tag_list = [RunTag(k, str(v)) for k, v in tags.items()]
    while param_list or tag_list:
        client.log_batch(
            run_id,
            params=param_list[:MAX_PARAMS_PER_BATCH],
            tags=tag_list[:MAX_TAGS_PER_BATCH],
        )
        param_list = param_list[MAX_PARAMS_PER_BATCH:]
        tag_list = tag_list[MAX_TAGS_PER_BATCH:]


def log_dataset(
    client: MlflowClient, run_id: str, name: str, dataset, sha256: str, path: str | None
) -> None:
    """The training data as the run's dataset input ``name``, read from ``path`` (None: built
    in). Its digest is the sha256's prefix (MLflow stores at most 36 characters); the whole
    sha256 is the gradq.dataset_sha256 tag."""
    numpy_dataset = mlflow.data.from_numpy(
        dataset.X.T,  # MLflow's convention: one example per row
        targets=dataset.Y[0],
        source=dataset_source(name, path),
        name=name,
        digest=sha256[:MAX_DATASET_DIGEST],
    )
    context = InputTag(key="mlflow.data.context", value="train")
    inputs = [DatasetInput(numpy_dataset._to_mlflow_entity(), [context])]
    try:
        client.log_inputs(run_id, inputs)
    except MlflowException as error:
        # Two runs of one experiment logging the same new dataset at once: the server
        # creates it for one and answers the other with a unique-constraint error (MLflow
        # 3.17). It exists now, so the second try only links it to this run.
        if "UNIQUE" not in str(error).upper() and "DUPLICATE" not in str(error).upper():
            raise
        client.log_inputs(run_id, inputs)


def dataset_source(name: str, path: str | None):
    """A local file source for an uploaded dataset, a code source naming a built-in one."""
    if path is None:
        return CodeDatasetSource({"gradq.builtin_dataset": name})
    # Built directly: resolving a path string warns that MLflow registered its local source
    # twice (MLflow 3.17).
    local = next(s for s in get_registered_sources() if s._get_source_type() == "local")
    return local(path)


def end_run(client: MlflowClient, run_id: str, outcome: str) -> None:
    client.set_terminated(run_id, RUN_STATUS[outcome])


def mark_scheduled(client: MlflowClient, run_id: str) -> None:
    """The run of a job handed back to the queue: not RUNNING, and not over either."""
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.SCHEDULED))
