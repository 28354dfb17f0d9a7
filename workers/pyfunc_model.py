"""The MLflow pyfunc model of a trained network, logged as MLflow "models from code".

MLflow copies this file into the model and runs it when the model loads; the ``models`` package
comes along as a code path. So this file imports nothing of gradq but ``models`` (never
``workers``), and the model loads wherever MLflow and NumPy are installed.

Artifacts: ``weights`` (weights.npz: W1, b1, ...) and ``network`` (network.json: layer_dims,
hidden_activation, output, dtype, classes).
"""

import json
from pathlib import Path

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from models import Network, load_weights


class NetworkModel(PythonModel):
    """Predicts from inputs with one example per row, (m, n_x), preprocessed like the training
    data; returns one row per example: ``label`` (class index), ``class`` (its name) and
    ``probabilities`` (one per class)."""

    def load_context(self, context) -> None:
        network = json.loads(Path(context.artifacts["network"]).read_text())
        self.classes = list(network["classes"])
        self.net = Network(
            layer_dims=network["layer_dims"],
            hidden_activation=network["hidden_activation"],
            output=network["output"],
            init="random",  # replaced by the trained weights below
            dtype=network["dtype"],
        )
        self.net.params = load_weights(context.artifacts["weights"])

    def predict(self, context, model_input, params=None):
        import pandas as pd  # an MLflow dependency, so always there where this runs

        rows = np.asarray(model_input, dtype=self.net.dtype)
        if rows.ndim == 1:
            rows = rows[None, :]
        n_x = self.net.layer_dims[0]
        if rows.ndim != 2 or rows.shape[1] != n_x:
            raise ValueError(f"expected inputs of shape (m, {n_x}), got {rows.shape}")
        A_out = self.net.forward(rows.T)  # (n[L], m)
        labels = self.net.classify(A_out)[0]
        A = np.vstack([1.0 - A_out, A_out]) if A_out.shape[0] == 1 else A_out  # (k, m)
        return pd.DataFrame(
            {
                "label": labels,
                "class": [self.classes[i] for i in labels],
                "probabilities": [column.tolist() for column in A.T],
            }
        )


mlflow.models.set_model(NetworkModel())
