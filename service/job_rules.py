"""The job spec rules that need the settings or the dataset (DESIGN.md section 4), and the
defaults that depend on them. Each broken rule is a 422 naming its field."""

import hashlib
import itertools
import json

from contract.metric_budget import logged_values, smallest_log_every
from contract.network_shape import SpecRuleError, network_shape
from contract.spec import JobSpec
from models import BUILTIN_DATASETS
from models.datasets.limits import float_bytes
from models.memory import JobShape, estimate_job_memory, largest_batch_that_fits
from models.units import human_bytes
from service.catalog import DatasetInfo
from service.errors import invalid
from settings import Settings


def complete_spec(spec: JobSpec, dataset: DatasetInfo | None, settings: Settings) -> JobSpec:
    """The spec with output, init and log_every filled in, or APIError(422) for the first
    broken rule."""
    if dataset is None:
        raise invalid(
            "dataset.name",
            f"unknown dataset {spec.dataset.name!r}; use a built-in "
            f"({', '.join(BUILTIN_DATASETS)}) or one uploaded with POST /v1/datasets",
        )
    if spec.training.epochs > settings.max_epochs:
        raise invalid(
            "training.epochs",
            f"{spec.training.epochs} epochs is over the maximum of {settings.max_epochs}",
        )
    try:
        shape = network_shape(spec.model, dataset.n_x, dataset.num_classes, dataset.name)
    except SpecRuleError as broken:
        raise invalid(broken.field, broken.reason) from None
    layer_dims = shape.layer_dims
    parameters = count_parameters(layer_dims)
    if parameters > settings.max_parameters:
        raise invalid(
            "model.hidden_layers",
            f"the network {layer_dims} has {parameters:,} parameters, over the budget of "
            f"{settings.max_parameters:,}",
        )
    _check_dataset_fits(dataset, spec.training.dtype, settings.max_dataset_bytes)
    job = job_shape(spec, dataset, layer_dims)
    _check_memory(job, settings.max_job_bytes)
    model = spec.model.model_copy(update={"output": shape.output, "init": shape.init})
    log_every = _log_every(spec, job, settings.max_metric_values)
    training = spec.training.model_copy(update={"log_every": log_every})
    return spec.model_copy(update={"model": model, "training": training})


def job_shape(spec: JobSpec, dataset: DatasetInfo, layer_dims: list[int]) -> JobShape:
    """What the job's memory depends on (models/memory.py)."""
    training = spec.training
    return JobShape(
        layer_dims=layer_dims,
        m=dataset.m,
        m_test=dataset.m_test,
        validation_split=training.validation_split,
        batch_size=training.batch_size,
        optimizer=training.optimizer,
        l2=training.l2,
        dtype=training.dtype,
        hidden_activation=spec.model.hidden_activation,
        epochs=training.epochs,
    )


def _check_dataset_fits(dataset: DatasetInfo, dtype: str, limit: int) -> None:
    """422 when the dataset, as floats of the job's dtype, is over what a worker may load (an
    upload is checked as float32: float64 takes twice that)."""
    size = float_bytes((dataset.m + dataset.m_test, dataset.n_x), dtype)
    if size > limit:
        raise invalid(
            "training.dtype",
            f"dataset {dataset.name!r} takes {human_bytes(size)} as {dtype}, over the limit of "
            f"{human_bytes(limit)} a dataset may take (GRADQ_MAX_DATASET_BYTES); use float32",
        )


def _check_memory(job: JobShape, limit: int) -> None:
    """422 when the job's estimated peak memory is over ``limit``: naming training.batch_size
    when a smaller batch would fit, else model.hidden_layers."""
    estimate = estimate_job_memory(job)
    if estimate.total <= limit:
        return
    parts = {**estimate.parts, estimate.peak_phase: estimate.phases[estimate.peak_phase]}
    detail = ", ".join(f"{name} {human_bytes(size)}" for name, size in parts.items())
    needs = (
        f"the job needs about {human_bytes(estimate.total)} of memory ({detail}), over the "
        f"limit of {human_bytes(limit)} (GRADQ_MAX_JOB_BYTES)"
    )
    batch = largest_batch_that_fits(job, limit)
    if batch is not None:
        fits = f"a training.batch_size of at most {batch} fits"
        raise invalid("training.batch_size", f"{needs}; {fits}")
    raise invalid(
        "model.hidden_layers",
        f"{needs}, whatever the batch size: use fewer or narrower hidden layers",
    )


def _log_every(spec: JobSpec, job: JobShape, budget: int) -> int:
    """training.log_every as given, or the smallest that keeps the run within ``budget``
    metric values (contract/metric_budget.py); 422 when the one given logs more."""
    epochs, per_epoch = spec.training.epochs, job.values_per_epoch
    needed = smallest_log_every(epochs, per_epoch, budget)
    given = spec.training.log_every
    if given is None:
        return needed
    if given < needed:
        raise invalid(
            "training.log_every",
            f"logging every {given} epoch(s) sends {logged_values(epochs, given, per_epoch):,} "
            f"metric values, over the budget of {budget:,} a run (GRADQ_MAX_METRIC_VALUES); "
            f"use at least {needed}",
        )
    return given


def count_parameters(layer_dims: list[int]) -> int:
    """Weights and biases of a dense network [n_x, n[1], ..., n[L]]."""
    return sum(n * (n_prev + 1) for n_prev, n in itertools.pairwise(layer_dims))


def request_sha256(spec_document: dict) -> str:
    """The idempotency fingerprint: the validated spec as canonical JSON."""
    canonical = json.dumps(spec_document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
