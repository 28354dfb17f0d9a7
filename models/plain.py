"""The seed's math as plain NumPy: each equation of the course is a line here.

One example per column, layers l = 1 .. L, A[0] = X: (n[0], m), and for each layer
W[l]: (n[l], n[l-1]), b[l]: (n[l], 1). No buffers, no BLAS calls, no tricks: this is the
reference that the fast engine (models/fast/) is held
to, to 1e-10 in float64 (tests/models/test_engines.py), and what ``gradient_check`` trusts.

    forward     Z[l] = W[l] A[l-1] + b[l]          A[l] = g(Z[l]), A[L] = σ(Z[L]) or softmax
    cost        J = -1/m Σ [Y log A[L] + (1 - Y) log(1 - A[L])]   (softmax: -1/m Σ Y log A[L])
    backward    dZ[L] = A[L] - Y
                dW[l] = dZ[l] A[l-1]ᵀ / m          db[l] = Σ dZ[l] / m  (over the examples)
                dZ[l-1] = W[l]ᵀ dZ[l] * g'(Z[l-1])
    update      W[l] ← W[l] - α dW[l]              b[l] ← b[l] - α db[l]

With L2 regularisation λ, J gains λ/(2m) Σ ||W[l]||² and dW[l] gains λ/m W[l].
"""
# ruff: noqa: E741  (l is the layer's index, as in the course)

import numpy as np

LEAKY_SLOPE = 0.01  # g(z) = 0.01 z for z ≤ 0: models/activations.py uses the same


def sigmoid(Z):
    with np.errstate(over="ignore"):  # e^-Z = inf for very negative Z: σ = 0, as it should
        return 1 / (1 + np.exp(-Z))


def softmax(Z):
    E = np.exp(Z - Z.max(axis=0, keepdims=True))  # the shift changes nothing but overflow
    return E / E.sum(axis=0, keepdims=True)


# g and g', by name: the hidden activations.
G = {
    "relu": lambda Z: np.maximum(Z, 0),
    "leaky_relu": lambda Z: np.where(Z > 0, Z, LEAKY_SLOPE * Z),
    "tanh": np.tanh,
    "sigmoid": sigmoid,
}
G_PRIME = {
    "relu": lambda Z: (Z > 0).astype(Z.dtype),
    "leaky_relu": lambda Z: np.where(Z > 0, 1, LEAKY_SLOPE).astype(Z.dtype),
    "tanh": lambda Z: 1 - np.tanh(Z) ** 2,
    "sigmoid": lambda Z: sigmoid(Z) * (1 - sigmoid(Z)),
}
OUTPUT = {"sigmoid": sigmoid, "softmax": softmax}


def forward(params, X, g="relu", output="sigmoid"):
    """A[L]: (n[L], m) for X: (n[0], m), and the cache [(A[l-1], Z[l]) for l = 1 .. L]."""
    L = len(params) // 2
    A, cache = X, []
    for l in range(1, L + 1):
        A_prev = A
        Z = params[f"W{l}"] @ A_prev + params[f"b{l}"]  # (n[l], m)
        A = G[g](Z) if l < L else OUTPUT[output](Z)
        cache.append((A_prev, Z))
    return A, cache


def cost(A, Y, output="sigmoid", params=None, l2=0.0):
    """J for A = A[L]: (n[L], m) against targets Y of the same shape (one-hot for softmax)."""
    m = Y.shape[1]
    eps = np.finfo(A.dtype).eps  # log(0) = -inf where a float rounded σ to exactly 0 or 1
    A = np.clip(A, eps, 1 - eps)
    if output == "sigmoid":
        J = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
    else:
        J = -np.sum(Y * np.log(A)) / m
    if l2:
        J += l2 / (2 * m) * sum(np.sum(W**2) for name, W in params.items() if name[0] == "W")
    return float(J)


def backward(params, cache, A, Y, g="relu", l2=0.0):
    """{"dW1": (n[1], n[0]), "db1": (n[1], 1), ...}: ∂J/∂params, from forward's A and cache."""
    L, m = len(cache), Y.shape[1]
    grads = {}
    dZ = A - Y  # dZ[L], for σ with its cross-entropy as for softmax with its own
    for l in range(L, 0, -1):
        A_prev, _ = cache[l - 1]
        grads[f"dW{l}"] = dZ @ A_prev.T / m + l2 / m * params[f"W{l}"]
        grads[f"db{l}"] = dZ.sum(axis=1, keepdims=True) / m
        if l > 1:
            _, Z_prev = cache[l - 2]
            dZ = params[f"W{l}"].T @ dZ * G_PRIME[g](Z_prev)
    return grads


def update(params, grads, learning_rate):
    """One step of gradient descent, in place: θ ← θ - α dθ for every W[l] and b[l]."""
    for name, theta in params.items():
        theta -= learning_rate * grads["d" + name]


def momentum_update(params, grads, learning_rate, velocity, beta=0.9):
    """v ← β v + (1 - β) dθ;  θ ← θ - α v.  ``velocity`` {"W1": ..., "b1": ...} is updated."""
    for name, theta in params.items():
        velocity[name] = beta * velocity[name] + (1 - beta) * grads["d" + name]
        theta -= learning_rate * velocity[name]


def adam_update(params, grads, learning_rate, moments, t, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """Adam's step t (from 1): m ← β₁m + (1-β₁)dθ;  v ← β₂v + (1-β₂)dθ²;
    θ ← θ - α m̂ / (√v̂ + ε) with m̂ = m / (1 - β₁ᵗ), v̂ = v / (1 - β₂ᵗ).
    ``moments`` {"m_W1": ..., "v_W1": ...} is updated."""
    for name, theta in params.items():
        d = grads["d" + name]
        m = moments["m_" + name] = beta1 * moments["m_" + name] + (1 - beta1) * d
        v = moments["v_" + name] = beta2 * moments["v_" + name] + (1 - beta2) * d**2
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        theta -= learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)
