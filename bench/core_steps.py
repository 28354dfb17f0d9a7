"""Where an MLP epoch's time goes: the training loop's steps timed one by one.

``.venv/bin/python bench/core_steps.py`` runs one epoch of the MLP case of bench/core.py
(784-256-128-10, ReLU/softmax, SGD, batch 128, 60,000 float32 samples) three times, with a
``perf_counter`` around each step of the loop (the same calls as ``models/fast/engine.py``'s,
written out layer by layer), and prints the milliseconds of the last epoch by step.
"""

import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import Network
from models.batches import Batches
from models.fast.workspace import Workspace
from models.optimizers import GradientDescent


def weight_step(ws, layer, W, dZ, A_prev, dW, descend: bool) -> None:
    """W ← W - dZ A_prevᵀ in the product, prepared once (Workspace.weight_step, as in
    training), or the product into dW for later."""
    if descend:
        ws.weight_step(layer, W, dZ, A_prev)
    else:
        np.matmul(dZ, A_prev.T, out=dW)


def timed_epoch(net: Network, batches: Batches, seed: int) -> collections.Counter:
    spent, P, relu = collections.Counter(), net.params, net.hidden_activation
    clock = time.perf_counter()
    update = GradientDescent(P)

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        spent[step] += now - clock
        clock = now

    workspaces = {}  # by batch size, their gradients shared, as the fast engine keeps them
    for index, (A0, Y, labels) in enumerate(batches.epoch(np.random.default_rng(seed))):
        b = A0.shape[1]
        if b not in workspaces:
            shared = next((w.grads for w in workspaces.values()), None)
            workspaces[b] = Workspace(net.layer_dims, b, net.dtype, grads=shared)
        ws = workspaces[b]
        lap("gather the batch's rows")
        Z1, Z2, Z3, g = ws.Z(1), ws.Z(2), ws.Z(3), ws.grads
        ws.forward_product(1, Z1, P["W1"], A0, P["b1"])
        lap("product W1 A0 + b1")
        relu.forward(Z1, Z1)
        ws.forward_product(2, Z2, P["W2"], Z1, P["b2"])
        relu.forward(Z2, Z2)
        ws.forward_product(3, Z3, P["W3"], Z2, P["b3"])
        lap("ReLU 1, layers 2-3 forward, ReLU 2")
        A_out, ws.cost = net.output.activate_with_cost(Z3, Y, ws.A_out)
        np.count_nonzero(net.classify(A_out)[0] == labels)
        lap("softmax, cost, accuracy")
        # From the second batch on, gradq steps each W inside its gradient's product.
        descend = index > 0
        dZ3 = net.output.gradient(A_out, Y, out=ws.dZ[3], scale=0.01)
        np.matmul(dZ3, ws.ones, out=g["db3"])
        dZ2 = relu.backward(np.matmul(P["W3"].T, dZ3, out=ws.dZ[2]), Z2)
        weight_step(ws, 3, P["W3"], dZ3, Z2, g["dW3"], descend)
        np.matmul(dZ2, ws.ones, out=g["db2"])
        dZ1 = relu.backward(np.matmul(P["W2"].T, dZ2, out=ws.dZ[1]), Z1)
        weight_step(ws, 2, P["W2"], dZ2, Z1, g["dW2"], descend)
        np.matmul(dZ1, ws.ones, out=g["db1"])
        lap("layers 3-2 backward, db1, W3 and W2")
        weight_step(ws, 1, P["W1"], dZ1, A0, g["dW1"], descend)
        lap("product dW1 = dZ1 A0ᵀ (and W1's step)")
        if descend:
            update.step({k: P[k] for k in ("b1", "b2", "b3")}, g, 0.01, 0.01)
        else:
            update.step(P, g, 0.01, 0.01)
        lap("update θ -= dθ (biases only after batch 1)")
    return spent


def main() -> None:
    rng = np.random.default_rng(0)
    rows = rng.random((60_000, 784), dtype=np.float32)
    labels = rng.integers(0, 10, 60_000)
    net = Network([784, 256, 128, 10], "relu", "softmax", init="he", seed=1)
    batches = Batches(net, rows.T, labels[None, :], 128)
    for seed in range(3):
        spent = timed_epoch(net, batches, seed)
    print(f"one epoch: {sum(spent.values()) * 1e3:.0f} ms")
    for step, seconds in spent.items():
        print(f"  {step:44s} {seconds * 1e3:6.1f} ms")


if __name__ == "__main__":
    main()
