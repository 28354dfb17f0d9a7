"""The training loop: epochs, validation, history, checkpoints and callbacks, around an engine
that trains one epoch (models/fast/engine.py, or models/plain_engine.py for the seed's math).

Every metric of epoch e describes the network at the *start* of epoch e: ``cost`` and
``train_accuracy`` before the epoch's update (with mini-batches, the mean over the epoch's
batches, each taken before its own update), ``val_accuracy`` and ``grad_norm.W<l>`` (the
gradient of the epoch's first batch) likewise; ``update_ratio.W<l>`` is ‖ΔW[l]‖ / ‖W[l]‖ of
that first batch's update, W[l] before it (NaN while W[l] is all zeros).
"""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from models.batches import Batches, scoring_batch
from models.fast.engine import FastEngine
from models.labels import checked_labels
from models.network import Network
from models.optimizers import decayed_learning_rate
from models.plain_engine import PlainEngine
from models.serialization import Checkpoint

ENGINES = {"fast": FastEngine, "plain": PlainEngine}


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


class Engine(Protocol):
    """What trains one epoch; made once per ``train`` call from (net, batches, update, l2,
    resume_from), ``update`` made by its class's ``make_update(optimizer, params, **options)``."""

    def train_epoch(self, rate: float, rng: np.random.Generator) -> dict[str, float]: ...

    def predict(self, X: np.ndarray, batch: int) -> np.ndarray: ...

    def params(self) -> dict[str, np.ndarray]: ...

    def state(self) -> dict[str, np.ndarray]: ...

    def live_arrays(self) -> list[np.ndarray]: ...

    def finish(self) -> None: ...


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
    "learning_rate": [...], "grad_norm.W1": [...], "update_ratio.W1": [...], ...}, one value
    per epoch (the names of the MLflow metrics). Raises DivergenceError on a non-finite cost
    or weight, and ValueError on bad arguments, non-finite values in X_val (at once) or in X
    (found when the cost is).
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
    update = ENGINES[engine].make_update(optimizer, net.params, **(optimizer_options or {}))
    if resume_from is not None:
        update.load_state(resume_from.optimizer_state)
    trainer: Engine = ENGINES[engine](net, batches, update, l2, resume_from)
    val_batch = scoring_batch(batches.m, batches.size)  # what the validation pass costs, bounded

    def checkpoint(epochs_done: int) -> Checkpoint:
        return Checkpoint(
            epoch=epochs_done,
            params=trainer.params(),
            optimizer_state=trainer.state(),
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
                    predicted = trainer.predict(validation[0], val_batch)
                    metrics["val_accuracy"] = _accuracy(predicted, validation[1])
                metrics.update(trainer.train_epoch(rate, rng))
                _check_finite(trainer, epoch, metrics["cost"], rate, batches.rows)
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
        trainer.finish()
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


def _check_finite(trainer: Engine, epoch: int, cost: float, rate: float, rows: np.ndarray):
    """DivergenceError when the cost or a weight is not finite; ValueError when the cause is a
    non-finite value in the training inputs ``rows``: (m, n_x), X as training stores it.

    Called under np.errstate(over="ignore"): the float32 sum of large but finite weights may
    overflow, which the exact check below tells from a weight that is not finite."""
    arrays = trainer.live_arrays()
    if math.isfinite(cost) and all(math.isfinite(p.sum()) for p in arrays):
        return
    if math.isfinite(cost) and all(np.isfinite(p).all() for p in arrays):
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
    return X_val, checked_labels(Y_val, X_val.shape[1], net.num_classes, "Y_val")


def _accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float(np.count_nonzero(predicted[0] == labels)) / max(labels.size, 1)
