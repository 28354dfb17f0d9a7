"""Preallocated arrays for propagating one batch, reused batch after batch, and the two products
the fast engine takes in one BLAS call (models/fast/blas.py)."""

import operator
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from models.fast.blas import ONE_THREAD_GEMM_WORK, AddProduct, fused_available


def batch_buffer(n: int, m: int, dtype: np.dtype) -> np.ndarray:
    """An empty (n, m) array for a batch of m examples, stored with its shorter side contiguous:
    C-ordered when n >= m, else the transpose of a C-ordered (m, n) (one example per row).

    OpenBLAS writes W @ A_prev faster into such a "tall" output, and slower into a wide one
    (docs/benchmarks.md, 'Measured by hand'). The layout depends only on the shapes, so
    results stay reproducible.
    """
    return np.empty((n, m), dtype) if n >= m else np.empty((m, n), dtype).T


class _Prepared(NamedTuple):
    arrays: tuple  # the arrays the product was prepared for, checked by identity
    product: AddProduct


class Workspace:
    """Preallocated arrays for propagating a batch of ``m`` examples, reused batch after batch.

    A[l]: (n[l], m) for 1 <= l < L, overwritten in place from Z[l];  Z_out: (n[L], m) logits;
    A_out: (n[L], m) output probabilities; dZ[l]: (n[l], m); ones: (m, 1);
    grads {"dW1": (n[1], n[0]), "db1": (n[1], 1), ...}. Every (n, m) array is a batch_buffer
    except Z_out and A_out, C-ordered.
    backward=False: a forward pass only (scoring), without dZ, ones and grads.
    grads: another workspace's gradients to share (batches of two sizes, used in turn).
    """

    def __init__(
        self,
        layer_dims: Sequence[int],
        m: int,
        dtype: np.dtype,
        backward: bool = True,
        grads: dict[str, np.ndarray] | None = None,
    ):
        L = len(layer_dims) - 1
        self.m = m
        self.A = [None] + [batch_buffer(n, m, dtype) for n in layer_dims[1:L]]
        # The output's softmax reduces each column over the k classes, faster row by row on
        # C-ordered (k, m) than along short contiguous columns. dZ[L] stays a batch_buffer:
        # its products want that.
        self.Z_out = np.empty((layer_dims[L], m), dtype)
        self.A_out = np.empty((layer_dims[L], m), dtype)
        self.cost = float("nan")
        self._products: dict[tuple, _Prepared] = {}
        self._fused = fused_available(dtype)
        self.dZ, self.ones, self.grads = [], None, {}
        if not backward:
            return
        self.dZ = [None] + [batch_buffer(n, m, dtype) for n in layer_dims[1:]]
        self.ones = np.ones((m, 1), dtype)  # db = dZ @ ones: a gemv, faster than dZ.sum(axis=1)
        if grads is not None:
            self.grads = grads
            return
        for layer in range(1, L + 1):
            self.grads[f"dW{layer}"] = np.empty((layer_dims[layer], layer_dims[layer - 1]), dtype)
            self.grads[f"db{layer}"] = np.empty((layer_dims[layer], 1), dtype)

    def Z(self, layer: int) -> np.ndarray:  # noqa: N802 (the math's name)
        """The buffer of Z[layer]: (n[layer], m), which a hidden layer overwrites with A[layer]."""
        return self.A[layer] if layer < len(self.A) else self.Z_out

    def forward_product(self, layer: int, Z: np.ndarray, W: np.ndarray, A_prev: np.ndarray, b):
        """Z ← W A_prev + b, for W: (n[layer], n[layer-1]), A_prev: (n[layer-1], m),
        b: (n[layer], 1) added to every column, into Z: (n[layer], m).

        A product big enough for OpenBLAS to split over threads is taken onto Z filled with b,
        in one gemm (β = 1): an add after it is slower, likely because each thread leaves its
        part of Z in its own core's cache. A smaller product, run on one thread, is faster
        through np.matmul and an add (no ctypes call), and so is a single row or column,
        gemv's work (docs/benchmarks.md, 'Measured by hand'). Without NumPy's own gemm
        (models/fast/blas.py) the one-gemm route would be a matmul and an add anyway, plus a
        pass.
        """
        n, k = W.shape
        m = Z.shape[1]
        if not self._fused or 1 in (n, m) or n * k * m <= ONE_THREAD_GEMM_WORK:
            np.matmul(W, A_prev, out=Z)
            Z += b
            return
        np.copyto(Z, b)
        self._call_prepared(
            ("forward", layer), (Z, W, A_prev), lambda: AddProduct(Z, W, A_prev, 1.0)
        )

    def weight_step(self, layer: int, W: np.ndarray, dZ: np.ndarray, A_prev: np.ndarray):
        """W ← W - dZ A_prevᵀ in one gemm, for W: (n[layer], n[layer-1]), dZ: (n[layer], m)
        already scaled by the rate, A_prev: (n[layer-1], m)."""
        self._call_prepared(
            ("step", layer),
            (W, dZ, A_prev),
            lambda: AddProduct(W, dZ, A_prev.T, -1.0, self.grads[f"dW{layer}"]),
        )

    def _call_prepared(self, key: tuple, arrays: tuple, prepare) -> None:
        """Call the product ``prepare()`` makes for ``key``: made at the first call and again
        only when one of ``arrays`` is another object (the same ones come back batch after
        batch: weights are live arrays, the rest are this workspace's buffers)."""
        prepared = self._products.get(key)
        if prepared is None or not all(map(operator.is_, prepared.arrays, arrays)):
            prepared = self._products[key] = _Prepared(arrays, prepare())
        prepared.product()
