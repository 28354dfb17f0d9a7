"""The files of a trained network's model: an MLflow pyfunc saved from code
(workers/pyfunc_model.py, with models/plain.py as its one code path), its signature and input
example."""

import hashlib
import json
import sys
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import mlflow.pyfunc
import numpy as np
from mlflow.models import Model, ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, Schema, TensorSpec

from models import Network, plain, save_weights

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


SAVED_LAYOUTS = 4  # the models a process keeps the files of: a sweep's trials share one
KEPT_BYTES = 8 * 2**20  # a model's files larger than this (a wide input example) are not kept
_saved: OrderedDict[str, dict[str, bytes]] = OrderedDict()  # relative path: content
_saving = threading.Lock()  # the helper serves calls at once; save_model is not thread-safe


def write_model_files(
    path: Path,
    net: Network,
    classes: tuple[str, ...],
    mlflow_model: Model | None,
    example: np.ndarray,
) -> None:
    """The model's files at ``path``, without its weights (WEIGHTS_IN_MODEL, sent at the end).

    Every file but MLmodel depends only on the network's layout, its classes and the input
    example, and the trials of a sweep mostly share them: the files of the last SAVED_LAYOUTS
    layouts saved in this process are kept in memory and written again rather than saved
    again (save_model validates and writes them all, and checks the installed packages, at
    each call); MLmodel is then made this model's (``mlflow_model``'s ids and time)."""
    with _saving:
        _write_model_files(path, net, classes, mlflow_model or Model(), example)


def _write_model_files(path, net, classes, mlflow_model: Model, example) -> None:
    key = _layout_key(net, classes, example)
    if key in _saved:
        _saved.move_to_end(key)
        for name, content in _saved[key].items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(content)
        _describe(path / "MLmodel", mlflow_model)
        return
    with tempfile.TemporaryDirectory(prefix="gradq-weights-") as scratch:
        initial = Path(scratch) / "weights.npz"  # the architecture is what matters here
        save_weights(net.params, initial)
        save_pyfunc_model(path, net, classes, initial, mlflow_model, example)
    (path / WEIGHTS_IN_MODEL).unlink()
    files = [p for p in path.rglob("*") if p.is_file()]
    if sum(p.stat().st_size for p in files) <= KEPT_BYTES:
        _saved[key] = {p.relative_to(path).as_posix(): p.read_bytes() for p in files}
    while len(_saved) > SAVED_LAYOUTS:
        _saved.popitem(last=False)


def _layout_key(net: Network, classes: tuple[str, ...], example: np.ndarray) -> str:
    """What the model's files other than MLmodel's ids and time are made from."""
    layout = [net.layer_dims, net.hidden_activation.name, net.output.name, net.dtype.name,
              list(classes), example.dtype.str, example.shape]  # fmt: skip
    return hashlib.sha256(json.dumps(layout).encode() + example.tobytes()).hexdigest()


def _describe(mlmodel: Path, description: Model) -> None:
    """The MLmodel file at ``mlmodel`` made ``description``'s: its model, run and time. (The
    artifacts' ``uri``, where save_model found them, stays the first save's: a local scratch
    path either way, which nothing reads.)"""
    model = Model.load(mlmodel)
    for field in ("artifact_path", "model_uuid", "run_id", "model_id", "utc_time_created"):
        setattr(model, field, getattr(description, field))
    model.save(mlmodel)


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
    for name in [n for n in list(sys.modules) if n.startswith("code_model_")]:
        del sys.modules[name]
