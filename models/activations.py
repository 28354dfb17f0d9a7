"""Activation functions, each registered with its derivative.

Every derivative is written in terms of the activation's *output* ``A = g(Z)``: for all four
hidden activations g'(Z) is a function of A alone, so back propagation needs to keep only A and
the forward pass can overwrite Z with A in place (half the activation memory).

Shapes: any; the network uses ``(n[l], m)``.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LEAKY_RELU_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    """A hidden activation g and its derivative.

    forward(Z, out): A = g(Z), written to ``out`` (which may be Z itself); returns ``out``.
    backward(dA, A): dZ = dA * g'(Z) given A = g(Z), written into ``dA``; returns ``dA``.
    """

    name: str
    forward: Callable[[np.ndarray, np.ndarray], np.ndarray]
    backward: Callable[[np.ndarray, np.ndarray], np.ndarray]


def sigmoid(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(Z) = 1 / (1 + e^-Z), elementwise.

    Computed as (1 + tanh(Z/2)) / 2: the same function, but it never overflows e^-Z for large
    negative Z (no warnings, no inf), in float32 as in float64.
    """
    out = np.multiply(Z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def _sigmoid_backward(dA: np.ndarray, A: np.ndarray) -> np.ndarray:
    dA *= A * (1.0 - A)  # σ' = σ(1 - σ)
    return dA


def tanh(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """tanh(Z), elementwise."""
    return np.tanh(Z, out=out)


def _tanh_backward(dA: np.ndarray, A: np.ndarray) -> np.ndarray:
    dA *= 1.0 - A * A  # tanh' = 1 - tanh²
    return dA


def relu(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(Z, 0), elementwise."""
    return np.maximum(Z, _zeros_like(Z), out=out)


@functools.lru_cache(maxsize=8)
def _zeros(shape: tuple[int, ...], dtype: str, fortran: bool) -> np.ndarray:
    zeros = np.zeros(shape, dtype, order="F" if fortran else "C")  # Z's layout: a plain loop
    zeros.flags.writeable = False
    return zeros


def _zeros_like(Z: np.ndarray) -> np.ndarray | int:
    # np.maximum(Z, 0) takes NumPy's slow scalar path; batch-sized zeros are cached, anything
    # bigger than a batch is not worth keeping.
    if Z.size > 1 << 16:
        return 0
    return _zeros(Z.shape, Z.dtype.str, Z.flags.f_contiguous and not Z.flags.c_contiguous)


def _relu_backward(dA: np.ndarray, A: np.ndarray) -> np.ndarray:
    # relu' is 1 where A > 0 and 0 elsewhere (0 at Z = 0 by convention). Multiplying by the
    # mask beats np.copyto(..., where=) and boolean indexing (docs/benchmarks.md, 'Measured
    # by hand').
    return np.multiply(dA, A > 0, out=dA)


def leaky_relu(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Z where Z > 0, else 0.01·Z, elementwise."""
    scaled = Z * LEAKY_RELU_SLOPE
    return np.maximum(Z, scaled, out=out)


def _leaky_relu_backward(dA: np.ndarray, A: np.ndarray) -> np.ndarray:
    # A > 0 exactly where Z > 0, so A's sign tells the slope.
    dA *= np.where(A > 0, 1.0, LEAKY_RELU_SLOPE).astype(dA.dtype, copy=False)
    return dA


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("sigmoid", sigmoid, _sigmoid_backward),
        Activation("tanh", tanh, _tanh_backward),
        Activation("relu", relu, _relu_backward),
        Activation("leaky_relu", leaky_relu, _leaky_relu_backward),
    )
}


def get_activation(name: str) -> Activation:
    """The registered activation called ``name``; ValueError listing the known ones otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}"
        ) from None
