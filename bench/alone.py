"""The baseline of the service benchmarks: a job's training alone, as the worker calls it."""

import math
import statistics
import time

from contract.spec import JobSpec
from models import train
from settings import Settings

LONG_SPEC = {  # its epochs are set at run time, for TRAIN_SECONDS of training alone
    "experiment": "bench-tracking",
    "dataset": {"name": "digits"},
    "model": {"hidden_layers": [64, 32], "hidden_activation": "relu", "output": "softmax",
              "init": "he"},
    "training": {"optimizer": "adam", "learning_rate": 0.001, "batch_size": 16},
}  # fmt: skip
TRAIN_SECONDS = 6.0  # >= 5 s asked; the machine's speed drifts ±10-20 % between minutes
PROBE_EPOCHS = 100


def with_epochs(spec: dict, epochs: int) -> dict:
    return {**spec, "training": {**spec["training"], "epochs": epochs}}


def train_alone(spec: JobSpec, sessions, callbacks=()) -> float:
    """Seconds of the worker's models.train(...) call for ``spec`` (on a built-in dataset),
    in this process, with the BLAS threads the worker gives it."""
    from workers import blas_threads
    from workers.data import load_training_data
    from workers.run import build_network

    data, t = load_training_data(spec, Settings(), sessions), spec.training
    net = build_network(spec, data)
    threads = blas_threads.for_training(net.layer_dims, t.batch_size or data.m_train)
    started = time.perf_counter()
    with threads:
        train(net, data.X_train, data.Y_train, optimizer=t.optimizer, learning_rate=t.learning_rate,
              epochs=t.epochs, batch_size=t.batch_size, l2=t.l2, X_val=data.X_val,
              Y_val=data.Y_val, seed=t.seed, decay_rate=t.decay_rate, decay_every=t.decay_every,
              callbacks=callbacks)  # fmt: skip
    return time.perf_counter() - started


def epochs_for(seconds: float, sessions, spec: dict = LONG_SPEC) -> tuple[int, float]:
    """The epochs of ``spec`` that train for about ``seconds`` alone, and the seconds an epoch
    took: the median of three probes of PROBE_EPOCHS epochs. (Three 30-epoch probes once gave
    a job that trained 4.0 s, not 5.5: 18.7 ms an epoch where the job's own were 13.6.)"""
    probe = JobSpec.model_validate(with_epochs(spec, PROBE_EPOCHS))
    per_epoch = statistics.median(train_alone(probe, sessions) for _ in range(3)) / PROBE_EPOCHS
    return math.ceil(seconds / per_epoch), per_epoch
