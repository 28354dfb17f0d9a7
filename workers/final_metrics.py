"""A trained network's final cost and accuracies, their MLflow names, and each ranked metric's
best over the run."""

import math

import numpy as np

from contract.best_value import best_point
from models import Network
from workers.data import TrainingData


def final_metrics(
    net: Network, data: TrainingData, l2: float, batch_size: int | None = None
) -> dict[str, float | None]:
    """The trained network's cost and accuracies (after the last update), each set scored in
    batches of at most the training batch (models/batches.py scoring_batch)."""
    metrics: dict[str, float | None] = {
        "cost": net.cost(data.X_train, data.Y_train, l2=l2, batch_size=batch_size),
        "train_accuracy": accuracy(net, data.X_train, data.Y_train, batch_size),
        "val_accuracy": None,
    }
    if data.X_val is not None:
        metrics["val_accuracy"] = accuracy(net, data.X_val, data.Y_val, batch_size)
    if data.dataset.X_test is not None:
        X_test, Y_test = data.dataset.X_test, data.dataset.Y_test
        metrics["test_accuracy"] = accuracy(net, X_test, Y_test, batch_size)
    return metrics


def mlflow_final_metrics(metrics: dict[str, float | None]) -> dict[str, float]:
    """The final metrics' MLflow names: ``final.cost`` and so on (``cost`` is per epoch, taken
    before each update), but ``test_accuracy`` as is (only ever measured at the end)."""
    named = {k if k == "test_accuracy" else f"final.{k}": v for k, v in metrics.items()}
    return {k: v for k, v in named.items() if v is not None}


def accuracy(net: Network, X: np.ndarray, Y: np.ndarray, batch_size: int | None = None) -> float:
    """The fraction of the columns of X: (n_x, m) classified as Y: (1, m) says."""
    return float(np.mean(net.predict(X, batch_size) == Y)) if X.shape[1] else math.nan


RANKED = ("cost", "train_accuracy", "val_accuracy")


def best_metrics(
    history: dict[str, list[float]], final: dict[str, float | None]
) -> dict[str, float | int]:
    """Each ranked metric's best value over the run and the epoch it was measured at:
    ``best_val_accuracy`` and ``best_val_accuracy_epoch``, and so on (contract/best_value.py).
    Epoch e's value is the network at the start of epoch e; the final metrics count as the
    epoch after the last one, the network after the last update."""
    best = {}
    for name in RANKED:
        found = best_point(name, enumerate([*history.get(name, []), final.get(name)]))
        if found is not None:
            best[f"best_{name}"], best[f"best_{name}_epoch"] = found
    return best
