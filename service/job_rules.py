"""The job spec rules that need the settings or the dataset (DESIGN.md section 4), and the
defaults that depend on them. Each broken rule is a 422 naming its field."""

import hashlib
import itertools
import json

from models import BUILTIN_DATASETS
from models.initializers import DEFAULT_INIT
from service.catalog import DatasetInfo
from service.errors import invalid
from settings import Settings
from store.spec import JobSpec


def complete_spec(spec: JobSpec, dataset: DatasetInfo | None, settings: Settings) -> JobSpec:
    """The spec with output and init filled in, or APIError(422) for the first broken rule."""
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
    output = spec.model.output or ("sigmoid" if dataset.num_classes == 2 else "softmax")
    _check_output_fits(output, dataset)
    init = spec.model.init or default_init(spec.model.hidden_layers, spec.model.hidden_activation)
    if init == "zeros" and spec.model.hidden_layers:
        raise invalid(
            "model.init",
            "'zeros' is for logistic regression only (hidden units would stay identical); "
            "use 'random', 'xavier' or 'he'",
        )
    output_units = 1 if output == "sigmoid" else dataset.num_classes
    layer_dims = [dataset.n_x, *spec.model.hidden_layers, output_units]
    parameters = count_parameters(layer_dims)
    if parameters > settings.max_parameters:
        raise invalid(
            "model.hidden_layers",
            f"the network {layer_dims} has {parameters:,} parameters, over the budget of "
            f"{settings.max_parameters:,}",
        )
    model = spec.model.model_copy(update={"output": output, "init": init})
    return spec.model_copy(update={"model": model})


def _check_output_fits(output: str, dataset: DatasetInfo) -> None:
    classes = dataset.num_classes
    if output == "sigmoid" and classes != 2:
        raise invalid(
            "model.output",
            f"a sigmoid output needs exactly 2 classes; dataset {dataset.name!r} has {classes}: "
            "use 'softmax'",
        )
    if output == "softmax" and classes < 2:
        raise invalid(
            "model.output",
            f"a softmax output needs at least 2 classes; dataset {dataset.name!r} has {classes}",
        )


def default_init(hidden_layers: list[int], hidden_activation: str) -> str:
    """The core's default: zeros for logistic regression, He or Xavier by activation."""
    return DEFAULT_INIT[hidden_activation] if hidden_layers else "zeros"


def count_parameters(layer_dims: list[int]) -> int:
    """Weights and biases of a dense network [n_x, n[1], ..., n[L]]."""
    return sum(n * (n_prev + 1) for n_prev, n in itertools.pairwise(layer_dims))


def request_sha256(spec_document: dict) -> str:
    """The idempotency fingerprint: the validated spec as canonical JSON."""
    canonical = json.dumps(spec_document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
