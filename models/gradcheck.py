"""Gradient checking: back propagation against centred finite differences, in float64.

    dθ_approx[i] = (J(θ + ε e_i) - J(θ - ε e_i)) / 2ε
    difference   = ||dθ - dθ_approx|| / (||dθ|| + ||dθ_approx||)

A correct back propagation gives a difference around 1e-9 or below; a wrong one, 1e-3 or more.
"""

import numpy as np

from models.losses import l2_cost
from models.network import Network, Workspace


def gradient_check(
    net: Network,
    X: np.ndarray,
    Y: np.ndarray,
    l2: float = 0.0,
    epsilon: float = 1e-7,
    max_per_parameter: int | None = None,
    seed: int = 0,
) -> float:
    """The relative difference between ``net.gradients`` and finite differences at X: (n_x, m),
    Y: (1, m) labels or (k, m) one-hot, on a float64 copy of ``net``.

    max_per_parameter: check at most this many randomly chosen entries of each W[l] and b[l]
    (every entry when None): a big network has too many weights to perturb one by one.
    """
    net64 = net.astype("float64")
    X = np.asarray(X, dtype=np.float64)
    analytic = net64.gradients(X, Y, l2)  # checks the shapes of X and Y first
    # One workspace and one set of targets for the 2 costs per entry: net64.cost would
    # allocate both every time (~40% of a check of a small network).
    targets, workspace = net64.targets(Y), Workspace(net64.layer_dims, X.shape[1], np.float64)

    def cost() -> float:
        net64.propagate_forward(X, workspace, targets)
        return workspace.cost + l2_cost(net64.params, l2, X.shape[1])

    rng = np.random.default_rng(seed)
    exact, approx = [], []
    for name, theta in net64.params.items():
        flat = theta.reshape(-1)  # a view: perturbing it perturbs the network
        picked = np.arange(flat.size)
        if max_per_parameter is not None and flat.size > max_per_parameter:
            picked = rng.choice(flat.size, size=max_per_parameter, replace=False)
        for i in picked:
            original = flat[i]
            flat[i] = original + epsilon
            cost_plus = cost()
            flat[i] = original - epsilon
            cost_minus = cost()
            flat[i] = original
            approx.append((cost_plus - cost_minus) / (2 * epsilon))
            exact.append(analytic["d" + name].reshape(-1)[i])
    exact_v, approx_v = np.array(exact), np.array(approx)
    denominator = np.linalg.norm(exact_v) + np.linalg.norm(approx_v)
    if denominator == 0.0:
        return 0.0
    return float(np.linalg.norm(exact_v - approx_v) / denominator)
