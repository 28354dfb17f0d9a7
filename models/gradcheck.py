"""Gradient checking: back propagation against centred finite differences, in float64.

    dθ_approx[i] = (J(θ + ε e_i) - J(θ - ε e_i)) / 2ε
    difference   = ||dθ - dθ_approx|| / (||dθ|| + ||dθ_approx||)

A correct back propagation gives a difference around 1e-9 or below; a wrong one, 1e-3 or more.
Each entry checked costs two forward passes over the whole network: a big network is checked on
a sample of its entries (``max_per_parameter``, ``max_entries``).
"""

from collections.abc import Callable

import numpy as np

from models import plain
from models.losses import l2_cost
from models.network import Network


def gradient_check(
    net: Network,
    X: np.ndarray,
    Y: np.ndarray,
    l2: float = 0.0,
    epsilon: float = 1e-7,
    max_per_parameter: int | None = None,
    seed: int = 0,
    max_entries: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> float:
    """The relative difference between ``net.gradients`` and finite differences at X: (n_x, m),
    Y: (1, m) labels or (k, m) one-hot, on a float64 copy of ``net``.

    max_per_parameter: check at most this many randomly chosen entries of each W[l] and b[l]
    (every entry when None): a big network has too many weights to perturb one by one.
    max_entries: and at most this many in all, shared out over W1, b1, W2, ... in turn.
    should_stop: asked before each entry's pair of costs; True raises GradientCheckStopped.
    """
    net64 = net.astype("float64")
    X = np.asarray(X, dtype=np.float64)
    analytic = net64.gradients(X, Y, l2)  # checks the shapes of X and Y first
    # The plain wing's forward pass, as for the gradients, with the cost taken from the logits
    # Z[L] (models/losses.py): exact where σ rounds to 0 or 1, which plain.cost clips.
    targets, (g, output) = net64.targets(Y), net64.activation_names

    def cost() -> float:
        _, cache = plain.forward(net64.params, X, g, output)
        Z_out = cache[-1][1]  # (n[L], m)
        return net64.output.cost(Z_out, targets) + l2_cost(net64.params, l2, X.shape[1])

    rng = np.random.default_rng(seed)
    sizes = {name: theta.size for name, theta in net64.params.items()}
    counts = entries_per_parameter(sizes, max_per_parameter, max_entries)
    exact, approx = [], []
    for name, theta in net64.params.items():
        flat = theta.reshape(-1)  # a view: perturbing it perturbs the network
        picked = np.arange(flat.size)
        if counts[name] < flat.size:
            picked = rng.choice(flat.size, size=counts[name], replace=False)
        for i in picked:
            if should_stop is not None and should_stop():
                raise GradientCheckStopped(len(exact))
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


class GradientCheckStopped(Exception):  # noqa: N818 (a request honoured, not an error)
    """``should_stop`` asked the gradient check to stop; ``checked`` entries were done."""

    def __init__(self, checked: int):
        super().__init__(f"gradient check stopped after {checked} entries")
        self.checked = checked


def entries_per_parameter(
    sizes: dict[str, int], max_per_parameter: int | None, max_entries: int | None
) -> dict[str, int]:
    """How many entries of each parameter (``sizes`` in order) to check: all of them, at most
    ``max_per_parameter`` each, and at most ``max_entries`` in all, given one at a time to
    W1, b1, W2, ... in turn, so every parameter gets its share while the budget lasts."""
    wanted = {
        name: size if max_per_parameter is None else min(size, max_per_parameter)
        for name, size in sizes.items()
    }
    if max_entries is None or sum(wanted.values()) <= max_entries:
        return wanted
    counts = dict.fromkeys(sizes, 0)
    left = max_entries
    while left:
        open_ = [name for name in sizes if counts[name] < wanted[name]]
        share = max(1, left // len(open_))
        for name in open_:
            give = min(share, wanted[name] - counts[name], left)
            counts[name] += give
            left -= give
            if not left:
                break
    return counts
