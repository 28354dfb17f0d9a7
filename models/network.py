"""The L-layer dense network: forward propagation, cost, back propagation, prediction.

For l = 1 .. L, with A[0] = X:
    Z[l] = W[l] A[l-1] + b[l]          W[l]: (n[l], n[l-1]), b[l]: (n[l], 1), Z[l]: (n[l], m)
    A[l] = g(Z[l])  for l < L          the hidden activation (relu, tanh, ...)
    A[L] = σ(Z[L]) or softmax(Z[L])    the output, paired with its cross-entropy cost
Back propagation, from dZ[L] = (A[L] - Y) / m:
    dW[l] = dZ[l] A[l-1]ᵀ (+ λ/m W[l])   db[l] = Σ_columns dZ[l]
    dZ[l-1] = W[l]ᵀ dZ[l] * g'(Z[l-1])   (never for l = 1: nobody needs the input's gradient)
With layer_dims = [n_x, 1], sigmoid output and zeros init this is the seed's logistic
regression: z = wᵀx + b, a = σ(z).
"""

import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from models import plain
from models.activations import get_activation
from models.blas import ONE_THREAD_GEMM_WORK, AddProduct, fused_available
from models.initializers import DEFAULT_INIT, initialize
from models.losses import get_output, l2_cost

# Columns that forward, cost and predict propagate at a time, so that scoring a big set costs
# the memory of one batch (models/memory.py counts it) rather than of the whole set.
MAX_SCORING_BATCH = 1024


def scoring_batch(m: int, batch_size: int | None = None) -> int:
    """Columns of an (n_x, m) set scored at a time: the training batch size (all m when None),
    at most MAX_SCORING_BATCH, at least 1."""
    return max(1, min(batch_size or m, m, MAX_SCORING_BATCH))


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
        (models/blas.py) the one-gemm route would be a matmul and an add anyway, plus a pass.
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


class Network:
    """A fully connected network, one example per column.

    layer_dims: [n_x, n[1], ..., n[L]]; [n_x, 1] is logistic regression.
    hidden_activation: "relu", "leaky_relu", "tanh" or "sigmoid".
    output: "sigmoid" (n[L] = 1, binary labels) or "softmax" (n[L] = k >= 2 classes).
    init: "zeros" (logistic regression only), "random", "xavier", "he"; None picks zeros for
        logistic regression, He for ReLU-like and Xavier for saturating hidden layers.
    dtype: "float32" (fast, the default) or "float64" (gradient checks).
    """

    def __init__(
        self,
        layer_dims: Sequence[int],
        hidden_activation: str = "relu",
        output: str = "sigmoid",
        init: str | None = None,
        seed: int | None = 0,
        dtype: str = "float32",
    ):
        self.layer_dims = _checked_layer_dims(layer_dims, output)
        self.hidden_activation = get_activation(hidden_activation)
        self.output = get_output(output)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        if init is None:
            init = "zeros" if len(self.layer_dims) == 2 else DEFAULT_INIT[hidden_activation]
        self.init = init
        self._params = initialize(self.layer_dims, init, seed, self.dtype)

    @property
    def num_layers(self) -> int:
        """L, the number of layers with weights."""
        return len(self.layer_dims) - 1

    @property
    def num_classes(self) -> int:
        """2 for a sigmoid output, k for a softmax over k classes."""
        return 2 if self.output.name == "sigmoid" else self.layer_dims[-1]

    @property
    def num_parameters(self) -> int:
        return sum(p.size for p in self._params.values())

    @property
    def params(self) -> dict[str, np.ndarray]:
        """{"W1": (n[1], n[0]), "b1": (n[1], 1), ...}: the live arrays, updated in place."""
        return self._params

    @params.setter
    def params(self, new: Mapping[str, np.ndarray]) -> None:
        expected = {name: p.shape for name, p in self._params.items()}
        got = {name: np.shape(p) for name, p in new.items()}
        if got != expected:
            raise ValueError(f"params must have shapes {expected}, got {got}")
        self._params = {name: np.array(new[name], dtype=self.dtype) for name in expected}

    def astype(self, dtype: str) -> "Network":
        """A copy of this network whose parameters are cast to ``dtype``."""
        copy = object.__new__(Network)
        copy.__dict__.update(self.__dict__)
        copy.dtype = np.dtype(dtype)
        copy._params = {name: p.astype(dtype) for name, p in self._params.items()}
        return copy

    # -- the public face: X (n_x, m), Y (1, m) labels or (k, m) one-hot ----------------------

    # forward, cost and gradients are the seed's math as written (models/plain.py), which
    # gradient_check trusts; predict and training run the fast engine below. forward, cost
    # and predict propagate batch_size columns at a time (scoring_batch): the same numbers as
    # one pass (the cost up to the order of its sum), in a batch's memory.

    def forward(self, X: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Output probabilities A[L]: (n[L], m) for X: (n_x, m)."""
        X = self._inputs(X)
        out = np.empty((self.layer_dims[-1], X.shape[1]), self.dtype)
        for columns in self._scoring_columns(X.shape[1], batch_size):
            out[:, columns], _ = plain.forward(self._params, X[:, columns], *self.activation_names)
        return out

    def cost(
        self, X: np.ndarray, Y: np.ndarray, l2: float = 0.0, batch_size: int | None = None
    ) -> float:
        """Cross-entropy cost J (+ λ/(2m) Σ||W||² when l2 > 0) of X: (n_x, m) against Y."""
        X, Y = self._inputs(X), np.asarray(Y)
        m = X.shape[1]
        if Y.ndim != 2 or Y.shape[1] != m:
            raise ValueError(f"Y must have {m} columns, got shape {Y.shape}")
        costs = []  # (columns, mean cost over them)
        for columns in self._scoring_columns(m, batch_size):
            A, _ = plain.forward(self._params, X[:, columns], *self.activation_names)
            cost = plain.cost(A, self.targets(Y[:, columns]), self.output.name)
            costs.append((columns.stop - columns.start, cost))
        if len(costs) <= 1:  # one batch: its mean as it is, as a single pass gave it
            total = costs[0][1] if costs else float("nan")
        else:
            total = sum(b * c for b, c in costs) / m
        return total + l2_cost(self._params, l2, m)

    def gradients(self, X: np.ndarray, Y: np.ndarray, l2: float = 0.0) -> dict[str, np.ndarray]:
        """{"dW1": (n[1], n[0]), "db1": (n[1], 1), ...}: ∂J/∂params at X: (n_x, m), Y."""
        X, Y = self._inputs(X), self.targets(Y)
        if Y.shape[1] != X.shape[1]:
            raise ValueError(f"Y must have {X.shape[1]} columns, got shape {Y.shape}")
        A, cache = plain.forward(self._params, X, *self.activation_names)
        return plain.backward(self._params, cache, A, Y, self.hidden_activation.name, l2)

    def predict(self, X: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Class indices (1, m) for X: (n_x, m): σ > 0.5 for sigmoid, argmax for softmax."""
        X = self._inputs(X)
        predicted = np.empty((1, X.shape[1]), np.int64)
        for columns, ws in self.scoring_workspaces(X.shape[1], batch_size):
            predicted[:, columns] = self.classify(self.propagate_forward(X[:, columns], ws))
        return predicted

    def scoring_workspaces(
        self, m: int, batch_size: int | None = None
    ) -> Iterator[tuple[slice, "Workspace"]]:
        """(columns, forward-only workspace) for each batch of scoring_batch(m, batch_size)
        columns of an (n_x, m) set; two workspaces at most (the last batch may be shorter)."""
        size = scoring_batch(m, batch_size)
        made: dict[int, Workspace] = {}
        for start in range(0, m, size):
            columns = slice(start, min(start + size, m))
            b = columns.stop - start
            if b not in made:
                made[b] = Workspace(self.layer_dims, b, self.dtype, backward=False)
            yield columns, made[b]

    def _scoring_columns(self, m: int, batch_size: int | None = None) -> Iterator[slice]:
        size = scoring_batch(m, batch_size)
        return (slice(start, min(start + size, m)) for start in range(0, m, size))

    @property
    def activation_names(self) -> tuple[str, str]:
        """The hidden activation's and the output's names, as models/plain.py takes them."""
        return self.hidden_activation.name, self.output.name

    # -- the engine, shared by the public face and the training loop ---------------------------

    def propagate_forward(
        self,
        X: np.ndarray,
        ws: Workspace,
        Y: np.ndarray | None = None,
        first_product_done: bool = False,
    ) -> np.ndarray:
        """Forward pass of X: (n_x, m) (any strides, self.dtype) into ``ws``; returns A[L].

        Given the targets Y: (n[L], m), the cost (without L2) comes along in ``ws.cost``.
        first_product_done: the caller already wrote W[1] X into ``ws.Z(1)`` (the Gram form).
        """
        A_prev = X
        L = self.num_layers
        for layer in range(1, L + 1):
            Z = ws.Z(layer)
            b = self._params[f"b{layer}"]
            if layer == 1 and first_product_done:
                Z += b
            else:
                ws.forward_product(layer, Z, self._params[f"W{layer}"], A_prev, b)
            if layer < L:
                A_prev = self.hidden_activation.forward(Z, Z)
        if Y is None:
            return self.output.activate(ws.Z_out, ws.A_out)
        A_out, ws.cost = self.output.activate_with_cost(ws.Z_out, Y, ws.A_out)
        return A_out

    def propagate_backward(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        ws: Workspace,
        l2: float = 0.0,
        scale: float = 1.0,
        first_weights: bool = True,
        descend_weights: bool = False,
    ) -> dict[str, np.ndarray]:
        """Back propagation after ``propagate_forward(X, ws)``; Y: (n[L], m) targets.

        Returns ws.grads, {"dW1": (n[1], n[0]), "db1": (n[1], 1), ...}, overwritten next call.
        scale multiplies every gradient: back propagation is linear in dZ[L], so scaling it
        there costs one pass over a small array instead of one over every dW (gradient
        descent passes its learning rate).
        first_weights=False leaves dW[1] out (the Gram form needs only dZ[1], in ws.dZ[1]).
        descend_weights=True takes the step W[l] ← W[l] - dW[l] inside each dW[l]'s product
        (models/blas.py) instead of returning dW[l]: gradient descent without L2, its rate
        passed as ``scale``. Each W[l] is updated once its dZ[l-1] no longer needs it.
        """
        if descend_weights and l2:
            raise ValueError("descend_weights takes plain gradient descent steps, without L2")
        m = X.shape[1]
        dZ = self.output.gradient(ws.A_out, Y, out=ws.dZ[self.num_layers], scale=scale)
        for layer in range(self.num_layers, 0, -1):
            W = self._params[f"W{layer}"]
            A_prev = ws.A[layer - 1] if layer > 1 else X
            weights = layer > 1 or first_weights
            if weights and not descend_weights:
                dW = np.matmul(dZ, A_prev.T, out=ws.grads[f"dW{layer}"])
                if l2:
                    dW += W * (scale * l2 / m)
            np.matmul(dZ, ws.ones, out=ws.grads[f"db{layer}"])
            dZ_prev = None
            if layer > 1:
                dA_prev = np.matmul(W.T, dZ, out=ws.dZ[layer - 1])
                dZ_prev = self.hidden_activation.backward(dA_prev, ws.A[layer - 1])
            if weights and descend_weights:  # after dZ[l-1], which needs W[l] as it was
                ws.weight_step(layer, W, dZ, A_prev)
            dZ = dZ_prev
        return ws.grads

    def classify(self, A_out: np.ndarray) -> np.ndarray:
        """Class indices (1, m) from output probabilities A[L]: (n[L], m)."""
        if self.output.name == "sigmoid":
            return (A_out > 0.5).astype(np.int64)
        return A_out.argmax(axis=0, keepdims=True)

    def targets(self, Y: np.ndarray) -> np.ndarray:
        """Y as the output layer's targets (n[L], m): one-hot columns for softmax.

        Accepts labels (1, m) or, for softmax, one-hot (k, m).
        """
        Y = np.asarray(Y)
        if self.output.name == "softmax" and Y.shape[0] == 1:
            return one_hot_labels(labels_of(Y), self.layer_dims[-1], self.dtype)
        if Y.shape[0] != self.layer_dims[-1]:
            raise ValueError(f"Y must have {self.layer_dims[-1]} rows, got shape {Y.shape}")
        return Y.astype(self.dtype, copy=False)

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[0] != self.layer_dims[0]:
            raise ValueError(f"X must have shape ({self.layer_dims[0]}, m), got {X.shape}")
        return X

    def __repr__(self) -> str:
        return (
            f"Network(layer_dims={self.layer_dims}, hidden_activation="
            f"{self.hidden_activation.name!r}, output={self.output.name!r}, init={self.init!r}, "
            f"dtype={self.dtype.name!r})"
        )


def labels_of(Y: np.ndarray) -> np.ndarray:
    """Class indices (m,) from labels (1, m) or one-hot columns (k, m)."""
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D, (1, m) labels or (k, m) one-hot; got shape {Y.shape}")
    labels = Y[0] if Y.shape[0] == 1 else Y.argmax(axis=0)
    return labels.astype(np.int64)


def one_hot_labels(labels: np.ndarray, k: int, dtype: np.dtype, out=None) -> np.ndarray:
    """One-hot columns (k, m) of class indices ``labels``: (m,), written into ``out`` if given."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be integer class indices of shape (m,), got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be in [0, {k}), got range {labels.min()}..{labels.max()}")
    if out is None:
        out = np.empty((k, labels.size), dtype)
    elif out.shape != (k, labels.size):
        raise ValueError(f"out must have shape {(k, labels.size)}, got {out.shape}")
    return write_one_hot(labels, out, np.arange(labels.size))


def write_one_hot(labels: np.ndarray, out: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """One-hot columns of ``labels``: (m,) into ``out``: (k, m), unchecked (one_hot_labels
    checks); columns: np.arange(m) or longer, which a caller may keep for batch after batch."""
    out.fill(0)
    out[labels, columns[: labels.size]] = 1
    return out


def _checked_layer_dims(layer_dims: Sequence[int], output: str) -> list[int]:
    dims = [int(n) for n in layer_dims]
    if len(dims) < 2 or any(n < 1 for n in dims):
        raise ValueError(f"layer_dims needs at least 2 positive sizes, got {list(layer_dims)}")
    if output == "sigmoid" and dims[-1] != 1:
        raise ValueError(f"a sigmoid output has 1 unit, got layer_dims[-1] = {dims[-1]}")
    if output == "softmax" and dims[-1] < 2:
        raise ValueError(f"a softmax output needs >= 2 units, got layer_dims[-1] = {dims[-1]}")
    return dims
