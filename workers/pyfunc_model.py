"""The MLflow pyfunc model of a trained network, logged as MLflow "models from code".

MLflow copies this file into the model and runs it when the model loads; ``models/plain.py``
(the seed's math, NumPy only) comes along as its one code path, importable there as
``plain``. So the model loads wherever MLflow and NumPy are installed, and a model is a dozen
files to upload, not the whole ``models`` package.

Artifacts: ``weights`` (weights.npz: W1, b1, ...) and ``network`` (network.json: layer_dims,
hidden_activation, output, dtype, classes).
"""

import json
from pathlib import Path

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

try:
    import plain  # in a loaded model: its code path
except ImportError:  # where gradq is installed (the worker saving the model)
    from models import plain


class NetworkModel(PythonModel):
    """Predicts from inputs with one example per row, (m, n_x), preprocessed like the training
    data; returns one row per example: ``label`` (class index), ``class`` (its name) and
    ``probabilities`` (one per class)."""

    def load_context(self, context) -> None:
        network = json.loads(Path(context.artifacts["network"]).read_text())
        self.classes = list(network["classes"])
        self.n_x = network["layer_dims"][0]
        self.dtype = np.dtype(network["dtype"])
        self.g, self.output = network["hidden_activation"], network["output"]
        with np.load(context.artifacts["weights"], allow_pickle=False) as weights:
            self.params = {name: weights[name] for name in weights.files}

    def predict(self, context, model_input, params=None):
        import pandas as pd  # an MLflow dependency, so always there where this runs

        rows = np.asarray(model_input, dtype=self.dtype)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != self.n_x:
            raise ValueError(f"expected inputs of shape (m, {self.n_x}), got {rows.shape}")
        A_out, _ = plain.forward(self.params, rows.T, self.g, self.output)  # (n[L], m)
        if self.output == "sigmoid":
            labels = (A_out[0] > 0.5).astype(np.int64)  # (m,)
            A = np.vstack([1.0 - A_out, A_out])  # (2, m)
        else:
            labels, A = A_out.argmax(axis=0), A_out  # (m,), (k, m)
        return pd.DataFrame(
            {
                "label": labels,
                "class": [self.classes[i] for i in labels],
                "probabilities": [column.tolist() for column in A.T],
            }
        )


mlflow.models.set_model(NetworkModel())
