"""Update rules, one small class each, and the learning-rate schedule.

Each optimizer updates the parameters in place from the gradients of one batch:
``step(params, grads, learning_rate, grads_scale)``, with params {"W1": (n[1], n[0]),
"b1": (n[1], 1), ...} and grads of the same shapes under "dW1", "db1", ..., multiplied by
``grads_scale``. The gradients may be overwritten. ``gradient_scale(learning_rate)`` says
which scale the optimizer would like back propagation to apply for free (see
models/fast/propagation.py): gradient descent asks for its learning rate, so its update is a
single ``θ -= dθ``.
Its state (velocities, moments, step count) round-trips through ``state()`` /
``load_state()`` so that a resumed run continues bit for bit.
"""

import math

import numpy as np


class GradientDescent:
    """θ ← θ - α dθ."""

    name = "gd"

    def __init__(self, params: dict[str, np.ndarray]):
        pass

    def gradient_scale(self, learning_rate: float) -> float:
        return learning_rate

    def step(self, params, grads, learning_rate: float, grads_scale: float = 1.0) -> None:
        for name, theta in params.items():
            d_theta = grads["d" + name]
            if grads_scale != learning_rate:
                d_theta *= learning_rate / grads_scale  # the gradient buffer is scratch
            theta -= d_theta

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        pass


class Momentum:
    """v ← β v + (1 - β) dθ;  θ ← θ - α v  (the course's exponentially weighted form)."""

    name = "momentum"

    def __init__(self, params: dict[str, np.ndarray], beta: float = 0.9):
        self.beta = beta
        self.velocity = {name: np.zeros_like(p) for name, p in params.items()}

    def gradient_scale(self, learning_rate: float) -> float:
        return 1.0

    def step(self, params, grads, learning_rate: float, grads_scale: float = 1.0) -> None:
        for name, theta in params.items():
            v, d_theta = self.velocity[name], grads["d" + name]
            v *= self.beta
            d_theta *= (1.0 - self.beta) / grads_scale
            v += d_theta
            np.multiply(v, learning_rate, out=d_theta)
            theta -= d_theta

    def state(self) -> dict[str, np.ndarray]:
        return {f"v_{name}": v for name, v in self.velocity.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for name, v in self.velocity.items():
            v[...] = state[f"v_{name}"]


class Adam:
    """m ← β₁m + (1-β₁)dθ;  v ← β₂v + (1-β₂)dθ²;  θ ← θ - α m̂ / (√v̂ + ε),
    with the bias corrections m̂ = m / (1 - β₁ᵗ), v̂ = v / (1 - β₂ᵗ)."""

    name = "adam"

    def __init__(
        self,
        params: dict[str, np.ndarray],
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ):
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.t = 0
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self._scratch = {name: np.empty_like(p) for name, p in params.items()}

    def gradient_scale(self, learning_rate: float) -> float:
        return 1.0

    def step(self, params, grads, learning_rate: float, grads_scale: float = 1.0) -> None:
        self.t += 1
        m_correction = 1.0 - self.beta1**self.t
        v_correction = 1.0 - self.beta2**self.t
        for name, theta in params.items():
            m, v, d_theta = self.m[name], self.v[name], grads["d" + name]
            if grads_scale != 1.0:
                d_theta /= grads_scale
            scratch = self._scratch[name]
            np.square(d_theta, out=scratch)
            m *= self.beta1
            d_theta *= 1.0 - self.beta1
            m += d_theta
            v *= self.beta2
            scratch *= 1.0 - self.beta2
            v += scratch
            # θ -= α m̂ / (√v̂ + ε), computed into scratch without temporaries
            np.divide(v, v_correction, out=scratch)
            np.sqrt(scratch, out=scratch)
            scratch += self.epsilon
            np.divide(m, scratch, out=scratch)
            scratch *= learning_rate / m_correction
            theta -= scratch

    def state(self) -> dict[str, np.ndarray]:
        state = {"t": np.array(self.t)}
        state.update({f"m_{name}": a for name, a in self.m.items()})
        state.update({f"v_{name}": a for name, a in self.v.items()})
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        for name in self.m:
            self.m[name][...] = state[f"m_{name}"]
            self.v[name][...] = state[f"v_{name}"]


# "sgd" is gradient descent on mini-batches: the same rule, named for how it is fed.
OPTIMIZERS = {"gd": GradientDescent, "sgd": GradientDescent, "momentum": Momentum, "adam": Adam}


def make_optimizer(name: str, params: dict[str, np.ndarray], **options):
    """The optimizer called ``name`` for ``params``; ValueError listing the known ones otherwise."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[name](params, **options)


def decayed_learning_rate(
    learning_rate: float, epoch: int, decay_rate: float = 0.0, decay_every: int = 1
) -> float:
    """α_e = α₀ / (1 + decay_rate · ⌊e / decay_every⌋): the course's scheduled decay; constant
    when decay_rate is 0."""
    return learning_rate / (1.0 + decay_rate * (epoch // decay_every))


def update_ratio(step_norm: float, weight_norm: float) -> float:
    """‖ΔW‖ / ‖W‖, W before the update: CS231n's rule of thumb wants about 1e-3 (far below,
    the layer barely learns; far above, it jumps). NaN for weights all zero (a zeros init
    before its first update), where no ratio means anything."""
    return step_norm / weight_norm if weight_norm > 0 else math.nan
