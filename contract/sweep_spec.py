"""The sweep request (DESIGN.md section 5): a base job spec, a space over its fields
(contract/sweep_space.py), the objective the trials are ranked by, and the sampling seed."""

from typing import Any, Literal

from pydantic import Field, model_validator

from contract.halving import Halving
from contract.spec import RegisteredName, Strict

MAX_SPACE_FIELDS = 50


class Objective(Strict):
    metric: Literal["val_accuracy", "train_accuracy", "cost"] = Field(
        "val_accuracy", description="A final metric of each trial."
    )
    goal: Literal["max", "min"] | None = Field(
        None, description="None: max for an accuracy, min for the cost."
    )

    @model_validator(mode="after")
    def _goal_by_metric(self) -> "Objective":
        if self.goal is None:
            self.goal = "min" if self.metric == "cost" else "max"
        return self


class SweepSpec(Strict):
    base: dict[str, Any] = Field(description="A job spec: what every trial shares.")
    space: dict[str, Any] = Field(
        max_length=MAX_SPACE_FIELDS,
        description='Spec fields to vary: a list is a grid axis; {"uniform": [a, b]}, '
        '{"log_uniform": [a, b]}, {"int": [a, b]} and {"choice": [...]} are random axes.',
    )
    objective: Objective = Field(default_factory=Objective)
    trials: int | None = Field(
        None, ge=1, description="Samples of the random axes, each tried with every grid point."
    )
    seed: int = Field(0, ge=0, lt=2**32, description="The random axes' sampling seed.")
    halving: Halving | None = Field(
        None,
        description="Asynchronous successive halving: stop the trials that fall behind at each "
        "rung of epochs (contract/halving.py); null trains every trial to its end.",
    )
    register_as: RegisteredName | None = Field(
        None,
        description="Once every trial has ended, register the best trial's model under this "
        "name; the alias 'champion' goes to the name's best version.",
    )
