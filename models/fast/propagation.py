"""Forward and back propagation into a Workspace: the seed's equations (models/plain.py) with
every array preallocated, the bias added inside the product, and the weight step optionally
taken inside its gradient's product.

For l = 1 .. L, with A[0] = X:
    Z[l] = W[l] A[l-1] + b[l]          W[l]: (n[l], n[l-1]), b[l]: (n[l], 1), Z[l]: (n[l], m)
    A[l] = g(Z[l]), written over Z[l]  A[L] = σ(Z[L]) or softmax(Z[L]) into ws.A_out
Back propagation, from dZ[L] = scale (A[L] - Y) / m:
    dW[l] = dZ[l] A[l-1]ᵀ (+ λ/m W[l])   db[l] = dZ[l] 1  (a gemv)
    dZ[l-1] = W[l]ᵀ dZ[l] * g'(Z[l-1])   (never for l = 1: nobody needs the input's gradient)

``net`` is a models.network.Network: its params, layer_dims, activations and dtype.
"""

from collections.abc import Iterator

import numpy as np

from models.batches import scoring_batch
from models.fast.workspace import Workspace


def propagate_forward(
    net, X: np.ndarray, ws: Workspace, Y: np.ndarray | None = None, first_product_done=False
) -> np.ndarray:
    """Forward pass of X: (n_x, m) (any strides, net.dtype) into ``ws``; returns A[L].

    Given the targets Y: (n[L], m), the cost (without L2) comes along in ``ws.cost``.
    first_product_done: the caller already wrote W[1] X into ``ws.Z(1)`` (the Gram form).
    """
    params, L = net.params, net.num_layers
    A_prev = X
    for layer in range(1, L + 1):
        Z = ws.Z(layer)
        b = params[f"b{layer}"]
        if layer == 1 and first_product_done:
            Z += b
        else:
            ws.forward_product(layer, Z, params[f"W{layer}"], A_prev, b)
        if layer < L:
            A_prev = net.hidden_activation.forward(Z, Z)
    if Y is None:
        return net.output.activate(ws.Z_out, ws.A_out)
    A_out, ws.cost = net.output.activate_with_cost(ws.Z_out, Y, ws.A_out)
    return A_out


def propagate_backward(
    net,
    X: np.ndarray,
    Y: np.ndarray,
    ws: Workspace,
    l2: float = 0.0,
    scale: float = 1.0,
    first_weights: bool = True,
    descend_weights: bool = False,
) -> dict[str, np.ndarray]:
    """Back propagation after ``propagate_forward(net, X, ws)``; Y: (n[L], m) targets.

    Returns ws.grads, {"dW1": (n[1], n[0]), "db1": (n[1], 1), ...}, overwritten next call.
    scale multiplies every gradient: back propagation is linear in dZ[L], so scaling it
    there costs one pass over a small array instead of one over every dW (gradient
    descent passes its learning rate).
    first_weights=False leaves dW[1] out (the Gram form needs only dZ[1], in ws.dZ[1]).
    descend_weights=True takes the step W[l] ← W[l] - dW[l] inside each dW[l]'s product
    (models/fast/blas.py) instead of returning dW[l]: gradient descent without L2, its rate
    passed as ``scale``. Each W[l] is updated once its dZ[l-1] no longer needs it.
    """
    if descend_weights and l2:
        raise ValueError("descend_weights takes plain gradient descent steps, without L2")
    m, L = X.shape[1], net.num_layers
    dZ = net.output.gradient(ws.A_out, Y, out=ws.dZ[L], scale=scale)
    for layer in range(L, 0, -1):
        W = net.params[f"W{layer}"]
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
            dZ_prev = net.hidden_activation.backward(dA_prev, ws.A[layer - 1])
        if weights and descend_weights:  # after dZ[l-1], which needs W[l] as it was
            ws.weight_step(layer, W, dZ, A_prev)
        dZ = dZ_prev
    return ws.grads


def scoring_workspaces(
    net, m: int, batch_size: int | None = None
) -> Iterator[tuple[slice, Workspace]]:
    """(columns, forward-only workspace) for each batch of scoring_batch(m, batch_size)
    columns of an (n_x, m) set; two workspaces at most (the last batch may be shorter)."""
    size = scoring_batch(m, batch_size)
    made: dict[int, Workspace] = {}
    for start in range(0, m, size):
        columns = slice(start, min(start + size, m))
        b = columns.stop - start
        if b not in made:
            made[b] = Workspace(net.layer_dims, b, net.dtype, backward=False)
        yield columns, made[b]


def predict(net, X: np.ndarray, batch_size: int | None = None, gram=None) -> np.ndarray:
    """Class indices (1, m) for X: (n_x, m) of net.dtype, batch_size columns at a time; W[1] X
    from ``gram`` (a models.fast.gram.GramFirstLayer) when training runs in the Gram form."""
    predicted = np.empty((1, X.shape[1]), np.int64)
    for columns, ws in scoring_workspaces(net, X.shape[1], batch_size):
        if gram is not None:
            gram.product_with(X, out=ws.Z(1), columns=columns)
        A_out = propagate_forward(net, X[:, columns], ws, first_product_done=gram is not None)
        predicted[:, columns] = net.classify(A_out)
    return predicted
