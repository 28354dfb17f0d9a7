"""Weight initializers. Biases always start at zero.

Draws are made in float64 from the seeded generator and then cast, so a float32 and a float64
network with the same seed start from the same numbers (up to rounding).
"""

from collections.abc import Callable, Sequence

import numpy as np


def _zeros(rng: np.random.Generator, n: int, n_prev: int) -> np.ndarray:
    return np.zeros((n, n_prev))


def _random(rng: np.random.Generator, n: int, n_prev: int) -> np.ndarray:
    return rng.standard_normal((n, n_prev)) * 0.01


def _xavier(rng: np.random.Generator, n: int, n_prev: int) -> np.ndarray:
    return rng.standard_normal((n, n_prev)) * np.sqrt(1.0 / n_prev)


def _he(rng: np.random.Generator, n: int, n_prev: int) -> np.ndarray:
    return rng.standard_normal((n, n_prev)) * np.sqrt(2.0 / n_prev)


INITIALIZERS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "zeros": _zeros,
    "random": _random,
    "xavier": _xavier,
    "he": _he,
}

# What a user who names no initializer gets: the seed's zeros for logistic regression, He for
# ReLU-like hidden layers, Xavier for the saturating ones.
DEFAULT_INIT = {"relu": "he", "leaky_relu": "he", "tanh": "xavier", "sigmoid": "xavier"}


def initialize(
    layer_dims: Sequence[int], init: str, seed: int | None, dtype: np.dtype
) -> dict[str, np.ndarray]:
    """Parameters {"W1": (n[1], n[0]), "b1": (n[1], 1), ...} for ``layer_dims`` = [n[0], ..., n[L]].

    ``zeros`` is refused for a network with hidden layers: every unit of a layer would compute
    the same function and receive the same gradient forever.
    """
    if init not in INITIALIZERS:
        raise ValueError(f"unknown init {init!r}; known: {', '.join(sorted(INITIALIZERS))}")
    if init == "zeros" and len(layer_dims) > 2:
        raise ValueError(
            "init 'zeros' is for logistic regression only: hidden units would stay identical; "
            "use 'random', 'xavier' or 'he'"
        )
    rng = np.random.default_rng(seed)
    params = {}
    for layer in range(1, len(layer_dims)):
        n, n_prev = layer_dims[layer], layer_dims[layer - 1]
        params[f"W{layer}"] = INITIALIZERS[init](rng, n, n_prev).astype(dtype)
        params[f"b{layer}"] = np.zeros((n, 1), dtype=dtype)
    return params
