"""The training loop: batches, forward and back propagation, updates, history, checkpoints.

Data is stored one example per *row* inside the loop, (m, n_x) C-contiguous, whatever the
caller's X: (n_x, m) looks like. Shuffling rows and gathering a batch of rows is cheap and
W @ batchᵀ multiplies at full speed; shuffling columns of an (n_x, m) array is slower. A
dataset from ``load_dataset`` is already stored this way (its X is a transposed view), so
training makes no copy of it at all.

Every metric of epoch e describes the network at the *start* of epoch e: ``cost`` and
``train_accuracy`` before the epoch's update (with mini-batches, the mean over the epoch's
batches, each taken before its own update), ``val_accuracy`` and ``grad_norm.W<l>`` (the
gradient of the epoch's first batch) likewise.
"""

import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from models import plain
from models.gram import STATE_KEYS, GramFirstLayer, gram_form_applies
from models.losses import l2_cost
from models.network import (
    Network,
    Workspace,
    labels_of,
    one_hot_labels,
    scoring_batch,
    write_one_hot,
)
from models.optimizers import OPTIMIZERS, GradientDescent, decayed_learning_rate, make_optimizer
from models.serialization import Checkpoint


class DivergenceError(RuntimeError):
    """Training produced a non-finite cost or weight; ``epoch`` says when."""

    def __init__(self, epoch: int, message: str):
        super().__init__(message)
        self.epoch = epoch


class TrainingStopped(Exception):  # noqa: N818 (a request honoured, not an error)
    """``should_stop`` asked to stop; ``checkpoint`` resumes the run where it stopped."""

    def __init__(self, checkpoint: Checkpoint, history: dict[str, list[float]]):
        super().__init__(f"training stopped after epoch {checkpoint.epoch - 1}")
        self.checkpoint = checkpoint
        self.history = history


class Callback(Protocol):
    """What ``train`` calls; both methods are optional."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, checkpoint: Checkpoint) -> None: ...


def train(
    net: Network,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    optimizer: str = "gd",
    learning_rate: float = 0.005,
    epochs: int = 2000,
    batch_size: int | None = None,
    l2: float = 0.0,
    X_val: np.ndarray | None = None,
    Y_val: np.ndarray | None = None,
    seed: int = 0,
    decay_rate: float = 0.0,
    decay_every: int = 1,
    optimizer_options: dict[str, float] | None = None,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] | None = None,
    checkpoint_every: int | None = None,
    resume_from: Checkpoint | None = None,
    engine: str = "fast",
) -> dict[str, list[float]]:
    """Train ``net`` in place on X: (n_x, m), Y: (1, m) labels or (k, m) one-hot.

    optimizer: "gd" (full batch unless batch_size is given), "sgd" (mini-batches of
        batch_size), "momentum" or "adam" (full batch or mini-batches).
    X_val: (n_x, m_val), Y_val: validation data, scored at the start of every epoch.
    seed: the shuffling generator's seed (the network's own seed fixed its initial weights).
    callbacks: ``on_epoch_end(epoch, metrics)`` after every epoch, ``on_checkpoint(checkpoint)``
        every ``checkpoint_every`` epochs.
    should_stop: asked after every epoch; True raises TrainingStopped with a checkpoint.
    resume_from: a checkpoint of this run; training continues at its epoch, bit for bit.
    engine: "fast" (workspaces, fused BLAS steps, the Gram form) or "plain" (models/plain.py,
        the seed's equations as written): the same numbers up to rounding, at other speeds.

    Returns the history {"cost": [...], "train_accuracy": [...], "val_accuracy": [...],
    "learning_rate": [...], "grad_norm.W1": [...], ...}, one value per epoch (the names of
    the MLflow metrics). Raises DivergenceError on a non-finite cost or weight, and ValueError
    on bad arguments, non-finite values in X_val (at once) or in X (found when the cost is).
    """
    if optimizer == "sgd" and batch_size is None:
        raise ValueError("optimizer 'sgd' trains on mini-batches: give a batch_size")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    batches = Batches(net, X, Y, batch_size)
    validation = _validation_data(net, X_val, Y_val)
    config = {
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "l2": l2,
        "seed": seed,
        "decay_rate": decay_rate,
        "decay_every": decay_every,
        "optimizer_options": optimizer_options or {},
    }
    rng = np.random.default_rng(seed)
    history = History()
    start = 0
    if resume_from is not None:
        _check_resumable(resume_from, config)
        net.params = resume_from.params
        rng.bit_generator.state = resume_from.rng_state
        history = History(resume_from.history)
        start = resume_from.epoch
    if engine == "plain":
        update = PlainUpdate(optimizer, net.params, **(optimizer_options or {}))
    else:
        update = make_optimizer(optimizer, net.params, **(optimizer_options or {}))
    if resume_from is not None:
        update.load_state(resume_from.optimizer_state)
    gram = _gram_first_layer(net, batches, update, l2, resume_from) if engine == "fast" else None
    one_epoch = _train_one_epoch if engine == "fast" else _train_one_epoch_plain
    val_batch = scoring_batch(batches.m, batches.size)  # what the validation pass costs, bounded

    def checkpoint(epochs_done: int) -> Checkpoint:
        params = {k: v.copy() for k, v in net.params.items()}
        state = {k: np.copy(v) for k, v in update.state().items()}
        if gram is not None:
            params["W1"] = gram.weights()
            state.update({k: np.copy(v) for k, v in gram.state().items()})
        return Checkpoint(
            epoch=epochs_done,
            params=params,
            optimizer_state=state,
            rng_state=rng.bit_generator.state,
            history=history.views(),  # what a checkpoint costs does not grow with the epochs
            config=config,
        )

    try:
        for epoch in range(start, epochs):
            rate = decayed_learning_rate(learning_rate, epoch, decay_rate, decay_every)
            metrics = {}
            # Overflow on the way to divergence is caught and explained by _check_finite.
            with np.errstate(over="ignore", invalid="ignore"):
                if validation is not None:
                    predicted = _predict(net, validation[0], gram, val_batch, engine)
                    metrics["val_accuracy"] = _accuracy(predicted, validation[1])
                metrics.update(one_epoch(net, batches, update, rate, l2, rng, gram))
                _check_finite(net, epoch, metrics["cost"], rate, batches.rows, gram)
            metrics["learning_rate"] = rate
            history.append(metrics)
            for callback in callbacks:
                if hasattr(callback, "on_epoch_end"):
                    callback.on_epoch_end(epoch, metrics)
            if checkpoint_every and (epoch + 1) % checkpoint_every == 0:
                saved = checkpoint(epoch + 1)
                for callback in callbacks:
                    if hasattr(callback, "on_checkpoint"):
                        callback.on_checkpoint(saved)
            if should_stop is not None and epoch + 1 < epochs and should_stop():
                raise TrainingStopped(checkpoint(epoch + 1), history.as_lists())
    finally:
        if gram is not None:  # the live W[1] is formed once, however training ended
            net.params["W1"][...] = gram.weights()
    return history.as_lists()


class History:
    """The metrics of each epoch, one growing float64 array per name: appending costs O(1)
    amortised, and a checkpoint takes views of the epochs done instead of copying them (values
    are only ever appended, so a view never changes)."""

    def __init__(self, initial: Mapping[str, Sequence[float]] | None = None):
        self._arrays: dict[str, np.ndarray] = {}
        self._lengths: dict[str, int] = {}
        for name, values in (initial or {}).items():
            values = np.asarray(values, dtype=np.float64)
            self._arrays[name] = np.array(values, copy=True)
            self._lengths[name] = values.size

    def append(self, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            values, n = self._arrays.get(name), self._lengths.get(name, 0)
            if values is None or n == values.size:
                grown = np.empty(max(16, 2 * n))
                if values is not None:
                    grown[:n] = values
                self._arrays[name] = values = grown
            values[n] = value
            self._lengths[name] = n + 1

    def views(self) -> dict[str, np.ndarray]:
        """{name: (epochs,) float64}: read-only views of the values so far."""
        views = {}
        for name, values in self._arrays.items():
            view = values[: self._lengths[name]]
            view.flags.writeable = False
            views[name] = view
        return views

    def as_lists(self) -> dict[str, list[float]]:
        return {name: view.tolist() for name, view in self.views().items()}


def _gram_first_layer(net, batches, update, l2, resume_from) -> GramFirstLayer | None:
    """The first layer in its Gram form (models/gram.py) when it applies: full-batch gradient
    descent without L2 on few, wide examples; a checkpoint made in that form continues in it."""
    if not isinstance(update, GradientDescent) or batches.size != batches.m or l2:
        return None
    state = resume_from.optimizer_state if resume_from is not None else {}
    if all(key in state for key in STATE_KEYS):
        return GramFirstLayer(net.params["W1"], batches.rows, state)
    if not gram_form_applies(batches.m, *net.layer_dims[:2]):
        return None
    return GramFirstLayer(net.params["W1"], batches.rows)


def _predict(
    net: Network, X: np.ndarray, gram: GramFirstLayer | None, batch: int, engine: str = "fast"
) -> np.ndarray:
    """net.predict(X, batch), with W[1] X from the Gram form when training uses it; the plain
    engine's forward pass for the plain engine."""
    if engine == "plain":  # Network.forward is the plain wing's
        return net.classify(net.forward(X, batch))
    if gram is None:
        return net.predict(X, batch)
    predicted = np.empty((1, X.shape[1]), np.int64)
    for columns, ws in net.scoring_workspaces(X.shape[1], batch):
        gram.product_with(X, out=ws.Z(1), columns=columns)
        A_out = net.propagate_forward(X[:, columns], ws, first_product_done=True)
        predicted[:, columns] = net.classify(A_out)
    return predicted


class Batches:
    """The training data stored one example per row, served as batches in the API's layout.

    Each batch is (A0: (n_x, b) a transposed view of gathered rows, Y: (n[L], b) targets,
    labels: (b,), workspace), with preallocated buffers reused every epoch.
    """

    def __init__(self, net: Network, X: np.ndarray, Y: np.ndarray, batch_size: int | None):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != net.layer_dims[0]:
            raise ValueError(f"X must have shape ({net.layer_dims[0]}, m), got {X.shape}")
        # No copy when X is already a transposed view of row-stored data of the right dtype.
        self.rows = np.ascontiguousarray(X.T, dtype=net.dtype)  # (m, n_x)
        self.labels = _checked_labels(net, Y, self.rows.shape[0], "Y")  # (m,)
        self.m = self.rows.shape[0]
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.size = self.m if batch_size is None else min(batch_size, self.m)
        self.net = net
        self._buffers: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, Workspace]] = {}
        self._columns = np.arange(self.size)  # column indices of a batch's one-hot targets
        self._full_batch = None  # (A0, targets, labels, workspace) when a batch is the whole set

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple]:
        """The batches of one epoch, shuffled by ``rng`` unless the batch is the whole set."""
        if self.size == self.m:
            if self._full_batch is None:  # one A0 view, as for _buffers_for's batches
                workspace = Workspace(self.net.layer_dims, self.m, self.net.dtype)
                targets = self._targets(self.labels, None)
                self._full_batch = self.rows.T, targets, self.labels, workspace
            yield self._full_batch
            return
        order = rng.permutation(self.m)
        for start in range(0, self.m, self.size):
            index = order[start : start + self.size]
            rows, A0, targets, workspace = self._buffers_for(index.size)
            self.rows.take(index, axis=0, out=rows, mode="clip")  # "clip": no extra copy
            labels = self.labels[index]
            yield A0, self._targets(labels, targets), labels, workspace

    def _buffers_for(self, b: int):
        """(rows: (b, n_x), A0: rows.T, targets: (n[L], b), workspace) for batches of b.

        A0 is one view kept with its rows: the same array batch after batch, so the
        workspace's prepared weight steps (Workspace.weight_step) recognise it."""
        if b not in self._buffers:
            net = self.net
            rows = np.empty((b, net.layer_dims[0]), net.dtype)
            # Batches of two sizes (the last one shorter) share one set of gradients.
            shared = next((ws.grads for *_, ws in self._buffers.values()), None)
            workspace = Workspace(net.layer_dims, b, net.dtype, grads=shared)
            # The targets in A_out's layout: A_out - Y runs along both arrays' memory.
            self._buffers[b] = rows, rows.T, np.empty_like(workspace.A_out), workspace
        return self._buffers[b]

    def _targets(self, labels: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        net = self.net
        if net.output.name == "softmax" and out is not None:
            return write_one_hot(labels, out, self._columns)  # labels checked in __init__
        if net.output.name == "softmax":
            return one_hot_labels(labels, net.layer_dims[-1], net.dtype, out=out)
        if out is None:
            return labels[None, :].astype(net.dtype)
        out[0] = labels
        return out


def _train_one_epoch(net, batches, update, rate, l2, rng, gram=None) -> dict[str, float]:
    cost_sum, correct, grad_norms = 0.0, 0, None
    # Plain gradient descent steps inside the weight gradients' products (models/blas.py),
    # from the second batch on: the first one's gradients are kept for their norms.
    fuse = isinstance(update, GradientDescent) and gram is None and not l2 and rate != 0
    biases = {name: p for name, p in net.params.items() if name.startswith("b")}
    for A0, Y, labels, workspace in batches.epoch(rng):
        b = A0.shape[1]
        if gram is not None:
            gram.product(out=workspace.Z(1))
        A_out = net.propagate_forward(A0, workspace, Y, first_product_done=gram is not None)
        cost_sum += b * (workspace.cost + l2_cost(net.params, l2, b))
        correct += int(np.count_nonzero(net.classify(A_out)[0] == labels))
        scale = update.gradient_scale(rate) or 1.0  # a zero rate would zero what we measure
        descend = fuse and grad_norms is not None
        grads = net.propagate_backward(
            A0, Y, workspace, l2, scale, first_weights=gram is None, descend_weights=descend
        )
        if grad_norms is None:  # before the update overwrites the gradients
            grad_norms = _gradient_norms(net, grads, workspace, gram, scale)
        if descend:
            update.step(biases, grads, rate, scale)
        elif gram is None:
            update.step(net.params, grads, rate, scale)
        else:
            update.step({k: p for k, p in net.params.items() if k != "W1"}, grads, rate, scale)
            gram.step(workspace.dZ[1], rate / scale)
    return {"cost": cost_sum / batches.m, "train_accuracy": correct / batches.m, **grad_norms}


def _train_one_epoch_plain(net, batches, update, rate, l2, rng, gram=None) -> dict[str, float]:
    """One epoch of the plain engine: the seed's forward, cost, backward and update per batch
    (models/plain.py); the same metrics as the fast engine's."""
    g, output = net.activation_names
    cost_sum, correct, grad_norms = 0.0, 0, None
    for A0, Y, labels, _workspace in batches.epoch(rng):
        b = A0.shape[1]
        A, cache = plain.forward(net.params, A0, g, output)
        cost_sum += b * plain.cost(A, Y, output, net.params, l2)
        correct += int(np.count_nonzero(net.classify(A)[0] == labels))
        grads = plain.backward(net.params, cache, A, Y, g, l2)
        if grad_norms is None:
            grad_norms = {
                f"grad_norm.W{layer}": float(np.linalg.norm(grads[f"dW{layer}"]))
                for layer in range(1, net.num_layers + 1)
            }
        update.step(net.params, grads, rate)
    return {"cost": cost_sum / batches.m, "train_accuracy": correct / batches.m, **grad_norms}


ENGINES = ("fast", "plain")


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


def _gradient_norms(net, grads, workspace, gram, scale: float) -> dict[str, float]:
    """{"grad_norm.W1": ‖dW[1]‖, ...} of gradients that back propagation scaled by ``scale``;
    dW[1] from G in the Gram form, which never forms it."""
    norms = {}
    for layer in range(1, net.num_layers + 1):
        if layer == 1 and gram is not None:
            norm = gram.gradient_norm(workspace.dZ[1])
        else:
            dW = grads[f"dW{layer}"]
            norm = math.sqrt(float(np.vdot(dW, dW)))
        norms[f"grad_norm.W{layer}"] = norm / scale
    return norms


def _check_finite(
    net: Network, epoch: int, cost: float, rate: float, rows: np.ndarray, gram=None
) -> None:
    """DivergenceError when the cost or a weight is not finite; ValueError when the cause is a
    non-finite value in the training inputs ``rows``: (m, n_x), X as training stores it.

    Called under np.errstate(over="ignore"): the float32 sum of large but finite weights may
    overflow, which the exact check below tells from a weight that is not finite."""
    params = [p for name, p in net.params.items() if gram is None or name != "W1"]
    gram_finite = gram is None or gram.is_finite()
    if math.isfinite(cost) and gram_finite and all(math.isfinite(p.sum()) for p in params):
        return
    if math.isfinite(cost) and gram_finite and all(np.isfinite(p).all() for p in params):
        return  # a sum overflowed: the weights are large, not broken
    bad_examples = np.flatnonzero(~np.isfinite(rows).all(axis=1))  # rows are X's columns
    if bad_examples.size:
        raise ValueError(
            f"X holds non-finite values (NaN or inf, or beyond {rows.dtype}'s range) in "
            f"{bad_examples.size} example(s), the first in column {bad_examples[0]}; training "
            "needs finite inputs"
        )
    what = f"cost is {cost}" if not math.isfinite(cost) else "a weight is not finite"
    raise DivergenceError(
        epoch,
        f"diverged at epoch {epoch}: {what}; the learning rate {rate:g} is likely too high "
        "(lower it), or the inputs are not scaled",
    )


def _check_resumable(checkpoint: Checkpoint, config: dict[str, Any]) -> None:
    different = {k: (checkpoint.config.get(k), v) for k, v in config.items()}
    different = {k: pair for k, pair in different.items() if pair[0] != pair[1]}
    if different:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in different.items())
        raise ValueError(f"cannot resume from a checkpoint made with other settings: {detail}")


def _validation_data(net, X_val, Y_val) -> tuple[np.ndarray, np.ndarray] | None:
    if X_val is None and Y_val is None:
        return None
    if X_val is None or Y_val is None:
        raise ValueError("give both X_val and Y_val, or neither")
    X_val = np.asarray(X_val, dtype=net.dtype)
    if X_val.ndim != 2 or X_val.shape[0] != net.layer_dims[0]:
        raise ValueError(f"X_val must have shape ({net.layer_dims[0]}, m), got {X_val.shape}")
    # The cost would not show it: only accuracy uses X_val. Checked a batch of rows at a time,
    # not with a mask the size of X_val.
    rows, size = X_val.T, scoring_batch(X_val.shape[1])
    for start in range(0, rows.shape[0], size):
        if not np.isfinite(rows[start : start + size]).all():
            raise ValueError("X_val holds non-finite values (NaN or inf)")
    return X_val, _checked_labels(net, Y_val, X_val.shape[1], "Y_val")


def _checked_labels(net: Network, Y, m: int, name: str) -> np.ndarray:
    labels = labels_of(Y)
    if labels.shape[0] != m:
        raise ValueError(f"{name} has {labels.shape[0]} examples, X has {m}")
    if labels.size and (labels.min() < 0 or labels.max() >= net.num_classes):
        raise ValueError(
            f"{name} labels must be in [0, {net.num_classes}) for this output, "
            f"got {labels.min()}..{labels.max()}"
        )
    return labels


def _accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float(np.count_nonzero(predicted[0] == labels)) / max(labels.size, 1)
