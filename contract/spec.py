"""The job spec (DESIGN.md section 4): the request body of POST /v1/jobs, stored with every
default filled in as jobs.spec, and read back by the worker.

Rules that need the settings or the dataset (the epoch maximum, the parameter budget, the
class count) are checked by the service; the shape of the spec is checked here.
"""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from contract.mlflow_names import MAX_TAG_VALUE_LENGTH, check_tag_key
from store.text import SqlText

Activation = Literal["sigmoid", "tanh", "relu", "leaky_relu"]


class Strict(BaseModel):
    # No NaN or infinity: JSON cannot hold them, and PostgreSQL refuses them in a JSON column.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DatasetRef(Strict):
    name: SqlText = Field(
        min_length=1, max_length=255, description="A built-in or uploaded dataset."
    )


class ModelSpec(Strict):
    hidden_layers: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(
        default_factory=list,
        max_length=50,
        description="Units of each hidden layer; [] is logistic regression.",
    )
    hidden_activation: Activation = "relu"
    output: Literal["sigmoid", "softmax"] | None = Field(
        None, description="None: sigmoid for two classes, softmax for more."
    )
    init: Literal["zeros", "random", "xavier", "he"] | None = Field(
        None, description="None: zeros for logistic regression, he/xavier otherwise."
    )


class TrainingSpec(Strict):
    optimizer: Literal["gd", "sgd", "momentum", "adam"] = "gd"
    learning_rate: float = Field(0.005, gt=0, le=100)
    epochs: int = Field(2000, ge=1)
    batch_size: int | None = Field(None, ge=1, description="None: full-batch gradient descent.")
    l2: float = Field(0.0, ge=0, le=1000)
    seed: int = Field(1, ge=0, lt=2**32)
    validation_split: float = Field(0.25, ge=0, lt=1)
    dtype: Literal["float32", "float64"] = "float32"
    checkpoint_every: int = Field(100, ge=1)
    engine: Literal["fast", "plain"] = Field(
        "fast",
        description="'fast': the tuned engine; 'plain': the seed's equations as written "
        "(models/plain.py), the same numbers up to rounding, slower.",
    )
    decay_rate: float = Field(0.0, ge=0, le=1000)
    decay_every: int = Field(1, ge=1)
    log_every: int | None = Field(
        None,
        ge=1,
        description="Per-epoch metrics go to MLflow at the epochs that are multiples of it, and "
        "at the last; None: decided at submission from the run's budget of metric values.",
    )

    def train_options(self) -> dict:
        """The keyword arguments of models.train that this spec sets."""
        return self.model_dump(
            include={"optimizer", "learning_rate", "epochs", "batch_size", "l2", "seed",
                     "decay_rate", "decay_every", "checkpoint_every", "engine"}
        )  # fmt: skip

    @model_validator(mode="after")
    def _sgd_needs_batches(self) -> "TrainingSpec":
        if self.optimizer == "sgd" and self.batch_size is None:
            raise ValueError("optimizer 'sgd' trains on mini-batches: set training.batch_size")
        return self


TagKey = Annotated[SqlText, AfterValidator(check_tag_key)]
TagValue = Annotated[SqlText, Field(max_length=MAX_TAG_VALUE_LENGTH)]
MAX_TAGS = 50  # with gradq's own, within one MLflow log_batch (100 tags)


# A name of the model registry: letters, digits, ".", "_" and "-" (it goes into MLflow's
# search filters, so no quote or space), starting with a letter or digit.
RegisteredName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


class JobSpec(Strict):
    # MLflow takes any non-empty experiment name of up to 500 characters.
    experiment: SqlText = Field("gradq", min_length=1, max_length=255)
    name: SqlText | None = Field(None, max_length=255, description="The MLflow run's name.")
    dataset: DatasetRef
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        max_length=MAX_TAGS,
        description="MLflow run tags; keys as MLflow accepts them, mlflow.* and gradq.* reserved.",
    )
    register_as: RegisteredName | None = Field(
        None,
        description="Register the trained model under this name in MLflow's registry; the "
        "alias 'champion' goes to its best version (contract/registry.py).",
    )


def flatten(spec: dict, prefix: str = "") -> dict[str, str]:
    """{"model": {"hidden_layers": [20]}} -> {"model.hidden_layers": "[20]"}: MLflow params."""
    flat = {}
    for key, value in spec.items():
        if isinstance(value, dict) and key != "tags":
            flat.update(flatten(value, f"{prefix}{key}."))
        elif key != "tags":
            flat[f"{prefix}{key}"] = "null" if value is None else str(value)
    return flat
