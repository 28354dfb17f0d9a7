"""Output layers paired with their cross-entropy losses, and the L2 penalty.

Each output activation comes with the loss it is meant for, because together they have the
simplest possible gradient: for sigmoid + binary cross-entropy and for softmax + categorical
cross-entropy alike, ∂J/∂Z = (A - Y) / m. Costs are computed from the logits Z (never from
log(A)), so they stay finite for any Z and the zero-initialized logistic regression costs
exactly ln 2.

Shapes: Z, A: (k, m) with k = 1 for sigmoid; Y: (k, m), 0/1 labels or one-hot columns.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from models.activations import sigmoid


def softmax(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Column-wise softmax of Z (k, m) into ``out`` (k, m); subtracting the column max keeps
    exp from overflowing."""
    out = np.subtract(Z, Z.max(axis=0, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=0, keepdims=True)
    return out


def binary_cross_entropy(Z: np.ndarray, Y: np.ndarray) -> float:
    """J = -1/m Σ [y log a + (1-y) log(1-a)] with a = σ(z), from the logits Z (1, m).

    Rewritten as 1/m Σ [max(z, 0) - z·y + log(1 + e^-|z|)], which is the same number and
    never takes the log of 0.
    """
    m = Z.shape[1]
    per_example = np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))
    return float(per_example.sum(dtype=np.float64) / m)


def categorical_cross_entropy(Z: np.ndarray, Y: np.ndarray) -> float:
    """J = -1/m Σ_examples Σ_classes y log softmax(z), from the logits Z (k, m), Y one-hot (k, m).

    Uses log softmax(z) = z - logsumexp(z), with the column max taken out first.
    """
    m = Z.shape[1]
    Z_max = Z.max(axis=0, keepdims=True)
    log_sum_exp = np.log(np.exp(Z - Z_max).sum(axis=0, keepdims=True)) + Z_max
    return float((log_sum_exp.sum(dtype=np.float64) - (Z * Y).sum(dtype=np.float64)) / m)


def softmax_with_cost(
    Z: np.ndarray, Y: np.ndarray, out: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """softmax(Z) into ``out`` and categorical_cross_entropy(Z, Y) in one pass over Z (k, m).

    Both need the shifted logits Z - max and their exponentials; sharing them halves the work
    of the training loop's output layer. log softmax(z)_y = (z_y - max) - log Σ exp(z - max).
    """
    m = Z.shape[1]
    out = np.subtract(Z, Z.max(axis=0, keepdims=True), out=out)
    picked = float(np.multiply(out, Y).sum(dtype=np.float64))
    np.exp(out, out=out)
    sums = out.sum(axis=0, keepdims=True)
    cost = (float(np.log(sums).sum(dtype=np.float64)) - picked) / m
    out /= sums
    return out, cost


def sigmoid_with_cost(
    Z: np.ndarray, Y: np.ndarray, out: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """σ(Z) into ``out`` and binary_cross_entropy(Z, Y), for Z: (1, m)."""
    return sigmoid(Z, out), binary_cross_entropy(Z, Y)


def cross_entropy_gradient(
    A: np.ndarray, Y: np.ndarray, out: np.ndarray | None = None, scale: float = 1.0
) -> np.ndarray:
    """dZ = (A - Y) / m (times ``scale``), the gradient of either pair's cost with respect to
    the logits."""
    out = np.subtract(A, Y, out=out)
    out *= scale / A.shape[1]
    return out


@dataclass(frozen=True)
class Output:
    """An output activation and the loss it pairs with.

    activate(Z, out) -> A: (k, m) probabilities.
    cost(Z, Y) -> float: mean loss from the logits.
    activate_with_cost(Z, Y, out) -> (A, cost): both at once, as training needs them.
    gradient(A, Y, out, scale) -> dZ: (k, m), ∂J/∂Z (times scale).
    """

    name: str
    loss: str
    activate: Callable[..., np.ndarray]
    cost: Callable[[np.ndarray, np.ndarray], float]
    activate_with_cost: Callable[..., tuple[np.ndarray, float]]
    gradient: Callable[..., np.ndarray] = cross_entropy_gradient


OUTPUTS: dict[str, Output] = {
    "sigmoid": Output(
        "sigmoid", "binary_cross_entropy", sigmoid, binary_cross_entropy, sigmoid_with_cost
    ),
    "softmax": Output(
        "softmax",
        "categorical_cross_entropy",
        softmax,
        categorical_cross_entropy,
        softmax_with_cost,
    ),
}


def get_output(name: str) -> Output:
    """The registered output called ``name``; ValueError listing the known ones otherwise."""
    try:
        return OUTPUTS[name]
    except KeyError:
        raise ValueError(f"unknown output {name!r}; known: {', '.join(sorted(OUTPUTS))}") from None


def l2_cost(params: Mapping[str, np.ndarray], l2: float, m: int) -> float:
    """The L2 penalty λ/(2m) Σ_l ||W[l]||², over the weights only (never the biases)."""
    if l2 == 0.0:
        return 0.0
    squares = sum(float(np.vdot(W, W)) for name, W in params.items() if name.startswith("W"))
    return l2 / (2 * m) * squares
