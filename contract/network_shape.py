"""The network a job spec builds on a dataset: the rules the API validates a spec by and the
worker builds its network by, written once (DESIGN.md section 4)."""

from dataclasses import dataclass

from contract.spec import ModelSpec
from models.initializers import DEFAULT_INIT


class SpecRuleError(ValueError):
    """A rule of the spec that needs the dataset is broken: ``field`` and the reason."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class NetworkShape:
    layer_dims: list[int]  # [n_x, n[1], ..., n[L]]
    hidden_activation: str
    output: str  # "sigmoid" or "softmax"
    init: str


def network_shape(model: ModelSpec, n_x: int, num_classes: int, dataset: str) -> NetworkShape:
    """The network ``model`` describes for a dataset of ``n_x`` inputs and ``num_classes``
    classes: a sigmoid output for two classes and a softmax for more unless told otherwise,
    the core's default initializer; SpecRuleError naming the field of the first broken rule."""
    output = model.output or ("sigmoid" if num_classes == 2 else "softmax")
    if output == "sigmoid" and num_classes != 2:
        raise SpecRuleError(
            "model.output",
            f"a sigmoid output needs exactly 2 classes; dataset {dataset!r} has {num_classes}: "
            "use 'softmax'",
        )
    if output == "softmax" and num_classes < 2:
        raise SpecRuleError(
            "model.output",
            f"a softmax output needs at least 2 classes; dataset {dataset!r} has {num_classes}",
        )
    hidden = list(model.hidden_layers)
    init = model.init or (DEFAULT_INIT[model.hidden_activation] if hidden else "zeros")
    if init == "zeros" and hidden:
        raise SpecRuleError(
            "model.init",
            "'zeros' is for logistic regression only (hidden units would stay identical); "
            "use 'random', 'xavier' or 'he'",
        )
    units = 1 if output == "sigmoid" else num_classes
    return NetworkShape([n_x, *hidden, units], model.hidden_activation, output, init)
