"""The fast engine: one epoch of training in preallocated workspaces, gradient descent's weight
steps inside their products, and the first layer in its Gram form where that applies.

It computes what models/plain.py computes, up to rounding (tests/models/test_engines.py holds
it there); models/training.py runs its epochs.
"""

import math

import numpy as np

from models.batches import Batches
from models.fast.gram import STATE_KEYS, GramFirstLayer, gram_form_applies
from models.fast.propagation import predict, propagate_backward, propagate_forward
from models.fast.workspace import Workspace
from models.losses import l2_cost
from models.optimizers import GradientDescent, make_optimizer, update_ratio
from models.serialization import Checkpoint


class FastEngine:
    """Trains ``net`` in place on ``batches`` with ``update`` (an optimizer of
    models/optimizers.py, made by ``make_update``), continuing ``resume_from`` when given."""

    make_update = staticmethod(make_optimizer)

    def __init__(self, net, batches: Batches, update, l2: float, resume_from: Checkpoint | None):
        self.net, self.batches, self.update, self.l2 = net, batches, update, l2
        self.gram = self._gram_first_layer(resume_from)
        self._workspaces: dict[int, Workspace] = {}  # by batch size

    def train_epoch(self, rate: float, rng: np.random.Generator) -> dict[str, float]:
        """One epoch: its cost, train_accuracy, grad_norm.W<l> and update_ratio.W<l>, each as
        models/training.py defines them."""
        net, gram, l2, update = self.net, self.gram, self.l2, self.update
        cost_sum, correct, grad_norms, ratios = 0.0, 0, None, {}
        # Plain gradient descent steps inside the weight gradients' products (models/fast/blas.py),
        # from the second batch on: the first one's gradients are kept for their norms.
        fuse = isinstance(update, GradientDescent) and gram is None and not l2 and rate != 0
        biases = {name: p for name, p in net.params.items() if name.startswith("b")}
        for A0, Y, labels in self.batches.epoch(rng):
            b = A0.shape[1]
            ws = self._workspace(b)
            if gram is not None:
                gram.product(out=ws.Z(1))
            A_out = propagate_forward(net, A0, ws, Y, first_product_done=gram is not None)
            cost_sum += b * (ws.cost + l2_cost(net.params, l2, b))
            correct += int(np.count_nonzero(net.classify(A_out)[0] == labels))
            scale = update.gradient_scale(rate) or 1.0  # a zero rate would zero what we measure
            descend = fuse and grad_norms is not None
            grads = propagate_backward(
                net, A0, Y, ws, l2, scale, first_weights=gram is None, descend_weights=descend
            )
            first = grad_norms is None
            if first:  # before the update overwrites the gradients and the weights
                grad_norms = self._gradient_norms(grads, ws, scale)
                before = self._weights_before(ws)
            if descend:
                update.step(biases, grads, rate, scale)
            elif gram is None:
                update.step(net.params, grads, rate, scale)
            else:
                update.step({k: p for k, p in net.params.items() if k != "W1"}, grads, rate, scale)
                gram.step(ws.dZ[1], rate / scale)
            if first:
                ratios = self._update_ratios(before, grad_norms, rate)
        m = self.batches.m
        return {"cost": cost_sum / m, "train_accuracy": correct / m, **grad_norms, **ratios}

    def predict(self, X: np.ndarray, batch: int) -> np.ndarray:
        """Class indices (1, m) for X: (n_x, m), with the weights as trained so far."""
        return predict(self.net, X, batch, self.gram)

    def params(self) -> dict[str, np.ndarray]:
        """Copies of the weights as trained so far (the Gram form forms W[1] for them)."""
        params = {k: v.copy() for k, v in self.net.params.items()}
        if self.gram is not None:
            params["W1"] = self.gram.weights()
        return params

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the optimizer's state, and the Gram form's when it runs."""
        state = {k: np.copy(v) for k, v in self.update.state().items()}
        if self.gram is not None:
            state.update({k: np.copy(v) for k, v in self.gram.state().items()})
        return state

    def live_arrays(self) -> list[np.ndarray]:
        """The arrays training writes its numbers into, for the divergence check."""
        if self.gram is None:
            return list(self.net.params.values())
        return [p for k, p in self.net.params.items() if k != "W1"] + [self.gram.C]

    def finish(self) -> None:
        """The live W[1] is formed once, however training ended."""
        if self.gram is not None:
            self.net.params["W1"][...] = self.gram.weights()

    def _workspace(self, b: int) -> Workspace:
        if b not in self._workspaces:
            # Batches of two sizes (the last one shorter) share one set of gradients.
            shared = next((ws.grads for ws in self._workspaces.values()), None)
            net = self.net
            self._workspaces[b] = Workspace(net.layer_dims, b, net.dtype, grads=shared)
        return self._workspaces[b]

    def _gram_first_layer(self, resume_from: Checkpoint | None) -> GramFirstLayer | None:
        """The first layer in its Gram form (models/fast/gram.py) when it applies: full-batch
        gradient descent without L2 on few, wide examples; a checkpoint made in that form
        continues in it."""
        net, batches = self.net, self.batches
        if not isinstance(self.update, GradientDescent) or batches.size != batches.m or self.l2:
            return None
        state = resume_from.optimizer_state if resume_from is not None else {}
        if all(key in state for key in STATE_KEYS):
            return GramFirstLayer(net.params["W1"], batches.rows, state)
        if not gram_form_applies(batches.m, *net.layer_dims[:2]):
            return None
        return GramFirstLayer(net.params["W1"], batches.rows)

    def _weights_before(self, ws: Workspace) -> dict[str, np.ndarray | float]:
        """What the update ratios need of the weights before the epoch's first update: with
        gradient descent, only ‖W[l]‖ (its step is α dW[l], whose norm is known; in the Gram
        form W[1] is never formed); with another optimizer, a copy of W[l]."""
        gram, descent = self.gram, isinstance(self.update, GradientDescent)
        before = {}
        for name, W in self.net.params.items():
            if name[0] != "W":
                continue
            if gram is not None and name == "W1":
                before[name] = gram.weight_norm()
            else:
                before[name] = math.sqrt(float(np.vdot(W, W))) if descent else W.copy()
        return before

    def _update_ratios(self, before, grad_norms: dict[str, float], rate: float) -> dict[str, float]:
        """{"update_ratio.W1": ‖ΔW[1]‖ / ‖W[1]‖, ...} of the epoch's first update, W before it.
        Where ``before`` holds a norm, the update was gradient descent's ΔW = -α dW, so
        ‖ΔW‖ = α ‖dW‖ (grad_norm)."""
        ratios = {}
        for layer in range(1, self.net.num_layers + 1):
            name, was = f"W{layer}", before[f"W{layer}"]
            if isinstance(was, float):
                step_norm, weight_norm = rate * grad_norms[f"grad_norm.{name}"], was
            else:
                step = self.net.params[name] - was
                step_norm = math.sqrt(float(np.vdot(step, step)))
                weight_norm = math.sqrt(float(np.vdot(was, was)))
            ratios[f"update_ratio.{name}"] = update_ratio(step_norm, weight_norm)
        return ratios

    def _gradient_norms(self, grads, ws: Workspace, scale: float) -> dict[str, float]:
        """{"grad_norm.W1": ‖dW[1]‖, ...} of gradients that back propagation scaled by
        ``scale``; dW[1] from G in the Gram form, which never forms it."""
        norms = {}
        for layer in range(1, self.net.num_layers + 1):
            if layer == 1 and self.gram is not None:
                norm = self.gram.gradient_norm(ws.dZ[1])
            else:
                dW = grads[f"dW{layer}"]
                norm = math.sqrt(float(np.vdot(dW, dW)))
            norms[f"grad_norm.W{layer}"] = norm / scale
        return norms
