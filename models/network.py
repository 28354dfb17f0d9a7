"""The L-layer dense network: its parameters, and forward, cost, gradients and predict over one
example per column.

Layer l = 1 .. L has W[l]: (n[l], n[l-1]), b[l]: (n[l], 1), Z[l] = W[l] A[l-1] + b[l] and
A[l] = g(Z[l]) with A[0] = X; the output A[L] is σ(Z[L]) or softmax(Z[L]), paired with its
cross-entropy cost. models/plain.py writes these equations out; with layer_dims = [n_x, 1],
sigmoid output and zeros init this is the seed's logistic regression: z = wᵀx + b, a = σ(z).
"""

from collections.abc import Mapping, Sequence

import numpy as np

from models import plain
from models.activations import get_activation
from models.batches import scoring_columns
from models.fast import propagation
from models.initializers import DEFAULT_INIT, initialize
from models.labels import labels_of, one_hot_labels
from models.losses import get_output, l2_cost


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
    # gradient_check trusts; predict runs the fast engine (models/fast/propagation.py).
    # forward, cost and predict propagate batch_size columns at a time (scoring_batch): the
    # same numbers as one pass (the cost up to the order of its sum), in a batch's memory.

    def forward(self, X: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Output probabilities A[L]: (n[L], m) for X: (n_x, m)."""
        X = self._inputs(X)
        out = np.empty((self.layer_dims[-1], X.shape[1]), self.dtype)
        for columns in scoring_columns(X.shape[1], batch_size):
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
        for columns in scoring_columns(m, batch_size):
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
        return propagation.predict(self, self._inputs(X), batch_size)

    @property
    def activation_names(self) -> tuple[str, str]:
        """The hidden activation's and the output's names, as models/plain.py takes them."""
        return self.hidden_activation.name, self.output.name

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


def _checked_layer_dims(layer_dims: Sequence[int], output: str) -> list[int]:
    dims = [int(n) for n in layer_dims]
    if len(dims) < 2 or any(n < 1 for n in dims):
        raise ValueError(f"layer_dims needs at least 2 positive sizes, got {list(layer_dims)}")
    if output == "sigmoid" and dims[-1] != 1:
        raise ValueError(f"a sigmoid output has 1 unit, got layer_dims[-1] = {dims[-1]}")
    if output == "softmax" and dims[-1] < 2:
        raise ValueError(f"a softmax output needs >= 2 units, got layer_dims[-1] = {dims[-1]}")
    return dims
