"""The files of a trained network's model: an MLflow pyfunc saved from code
(workers/pyfunc_model.py, with models/plain.py as its one code path), its signature and input
example."""

import json
import sys
from pathlib import Path

import mlflow.pyfunc
import numpy as np
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, Schema, TensorSpec

from models import Network, plain

PYFUNC_MODEL_FILE = Path(__file__).with_name("pyfunc_model.py")
PLAIN_WING = Path(plain.__file__).resolve()
WEIGHTS_IN_MODEL = "artifacts/weights.npz"  # where save_model puts the weights artifact


def save_pyfunc_model(
    path: Path,
    net: Network,
    classes: tuple[str, ...],
    weights: Path,
    mlflow_model: Model | None = None,
    example: np.ndarray | None = None,
) -> None:
    """The network as an MLflow pyfunc saved from code (workers/pyfunc_model.py) at ``path``,
    with its signature and, if given, an input example (1, n_x); ``mlflow_model``: the
    LoggedModel's description, if there is one."""
    network_json = path.parent / "network.json"
    network_json.write_text(
        json.dumps(
            {
                "layer_dims": net.layer_dims,
                "hidden_activation": net.hidden_activation.name,
                "output": net.output.name,
                "dtype": net.dtype.name,
                "classes": list(classes),
            }
        )
    )
    # MLflow warns at every save that predict has no type hints (its "once" filter is reset
    # by its own catch_warnings). On purpose: the model takes any (m, n_x) array or DataFrame;
    # a type hint it understands would make MLflow convert the input, and np.ndarray, which
    # it does not, trades the warning for a logged "Failed to infer model signature".
    mlflow.pyfunc.save_model(
        path,
        python_model=str(PYFUNC_MODEL_FILE),
        artifacts={"weights": str(weights), "network": str(network_json)},
        code_paths=[str(PLAIN_WING)],  # what workers/pyfunc_model.py imports
        # Explicit: inferring requirements starts a subprocess and takes seconds.
        pip_requirements=["numpy"],
        mlflow_model=mlflow_model,
        signature=model_signature(net.layer_dims[0], net.dtype.name),  # inferring runs the model
        input_example=example,
    )
    _forget_code_model_modules()
    network_json.unlink()  # inside model/artifacts/ now


def model_signature(n_x: int, dtype: str = "float32") -> ModelSignature:
    """Inputs: (m, n_x) of the network's dtype, one example per row, preprocessed like the
    training data; outputs: a row per example with its label, class name and probabilities."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(dtype), (-1, n_x))]),
        outputs=Schema([
            ColSpec(DataType.long, "label"),
            ColSpec(DataType.string, "class"),
            ColSpec(Array(DataType.double), "probabilities"),
        ]),
    )  # fmt: skip


def _forget_code_model_modules() -> None:
    """MLflow runs the model's code as a new module ``code_model_<uuid>`` at every save and
    leaves it in sys.modules: a worker that saves a model per job would keep them all."""
    for name in [n for n in sys.modules if n.startswith("code_model_")]:
        del sys.modules[name]
