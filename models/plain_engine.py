"""The plain engine: each batch through the seed's forward, cost, backward and update as written
(models/plain.py), with the same batches, metrics and checkpoints as the fast engine."""

import inspect

import numpy as np

from models import plain
from models.batches import Batches
from models.optimizers import OPTIMIZERS, make_optimizer, update_ratio


class PlainUpdate:
    """models/plain.py's update rules behind the optimizers' interface, their state under the
    same names (a checkpoint of either engine resumes in the other)."""

    def __init__(self, name: str, params: dict[str, np.ndarray], **options):
        if name not in OPTIMIZERS:
            make_optimizer(name, params)  # refused, naming the known ones
        inspect.signature(OPTIMIZERS[name]).bind(params, **options)  # unknown options refused
        self.name, self.options, self.t = name, options, 0
        # Only the state this rule keeps: velocities for momentum, moments for Adam.
        zeros = lambda prefixes: {  # noqa: E731
            f"{x}{k}": np.zeros_like(p) for k, p in params.items() for x in prefixes
        }
        self.velocity = zeros([""]) if name == "momentum" else {}
        self.moments = zeros(["m_", "v_"]) if name == "adam" else {}

    def step(self, params, grads, learning_rate: float) -> None:
        if self.name in ("gd", "sgd"):
            plain.update(params, grads, learning_rate)
        elif self.name == "momentum":
            plain.momentum_update(params, grads, learning_rate, self.velocity, **self.options)
        else:
            self.t += 1
            plain.adam_update(params, grads, learning_rate, self.moments, self.t, **self.options)

    def state(self) -> dict[str, np.ndarray]:
        if self.name == "momentum":
            return {f"v_{k}": v for k, v in self.velocity.items()}
        if self.name == "adam":
            return {"t": np.array(self.t), **self.moments}
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for name in self.state():
            if name == "t":
                self.t = int(state["t"])
            elif name.startswith("v_") and self.name == "momentum":
                self.velocity[name[2:]] = np.array(state[name])
            else:
                self.moments[name] = np.array(state[name])


class PlainEngine:
    """Trains ``net`` in place on ``batches`` with ``update`` (a PlainUpdate, made by
    ``make_update``); the same interface as models/fast/engine.py."""

    make_update = PlainUpdate

    def __init__(self, net, batches: Batches, update, l2: float, resume_from=None):
        self.net, self.batches, self.update, self.l2 = net, batches, update, l2

    def train_epoch(self, rate: float, rng: np.random.Generator) -> dict[str, float]:
        net, l2 = self.net, self.l2
        g, output = net.activation_names
        cost_sum, correct, grad_norms = 0.0, 0, None
        for A0, Y, labels in self.batches.epoch(rng):
            b = A0.shape[1]
            A, cache = plain.forward(net.params, A0, g, output)
            cost_sum += b * plain.cost(A, Y, output, net.params, l2)
            correct += int(np.count_nonzero(net.classify(A)[0] == labels))
            grads = plain.backward(net.params, cache, A, Y, g, l2)
            first = grad_norms is None
            if first:  # the epoch's first batch, as the fast engine reports
                grad_norms = {
                    f"grad_norm.W{layer}": float(np.linalg.norm(grads[f"dW{layer}"]))
                    for layer in range(1, net.num_layers + 1)
                }
                before = {name: W.copy() for name, W in net.params.items() if name[0] == "W"}
            self.update.step(net.params, grads, rate)
            if first:  # ‖ΔW[l]‖ / ‖W[l]‖, W before the update
                ratios = {
                    f"update_ratio.{name}": update_ratio(
                        float(np.linalg.norm(net.params[name] - W)), float(np.linalg.norm(W))
                    )
                    for name, W in before.items()
                }
        m = self.batches.m
        return {"cost": cost_sum / m, "train_accuracy": correct / m, **grad_norms, **ratios}

    def predict(self, X: np.ndarray, batch: int) -> np.ndarray:
        return self.net.classify(self.net.forward(X, batch))  # Network.forward is plain's

    def params(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.net.params.items()}

    def state(self) -> dict[str, np.ndarray]:
        return {k: np.copy(v) for k, v in self.update.state().items()}

    def live_arrays(self) -> list[np.ndarray]:
        return list(self.net.params.values())

    def finish(self) -> None:
        pass  # the live weights are the trained ones
