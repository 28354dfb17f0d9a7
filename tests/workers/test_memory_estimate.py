"""The job memory estimate (models/memory.py) against what a job really allocates: the worker's
own steps (split, gradient check, training with validation and checkpoints written by the
worker's store, final scoring, weights.npz) run under tracemalloc, which NumPy reports its
arrays to. The estimate must cover the measured peak without being wildly above it."""

import tracemalloc

import numpy as np
import pytest

from models import Dataset, Network, save_weights, train, train_val_split
from models.memory import JobShape, estimate_job_memory
from models.units import human_bytes
from workers.checkpoints.local import CheckpointStore
from workers.data import TrainingData
from workers.final_metrics import final_metrics
from workers.initial_check import initial_gradient_check

JOB = "ab"


def measured_peak(job: JobShape, tmp_path) -> int:
    """The peak bytes traced while a worker's steps run ``job`` on random data it makes."""
    n_x, k = job.layer_dims[0], job.layer_dims[-1]
    output = "sigmoid" if k == 1 else "softmax"
    classes = tuple(str(i) for i in range(max(k, 2)))
    rng = np.random.default_rng(0)
    store = CheckpointStore(tmp_path / "checkpoints")

    class Saver:
        def on_checkpoint(self, checkpoint):
            store.save(JOB, checkpoint)

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        rows = np.empty((job.m, n_x), job.dtype)  # the loaded dataset, one example per row
        rng.standard_normal(dtype=job.dtype, out=rows)
        dataset = Dataset("t", rows.T, rng.integers(0, len(classes), (1, job.m)), classes, (n_x,))
        del rows
        X, Y, X_val, Y_val = train_val_split(dataset.X, dataset.Y, job.validation_split, seed=1)
        if X_val.shape[1] == 0:
            X_val = Y_val = None
        net = Network(job.layer_dims, job.hidden_activation, output, None, 1, job.dtype)
        data = TrainingData(dataset, "sha", None, X, Y, X_val, Y_val)
        initial_gradient_check(net, data, job.l2)
        train(
            net, X, Y, optimizer=job.optimizer, learning_rate=0.01, epochs=job.epochs,
            batch_size=job.batch_size, l2=job.l2, X_val=X_val, Y_val=Y_val,
            callbacks=[Saver()], checkpoint_every=1,
        )  # fmt: skip
        final_metrics(net, data, job.l2, job.batch_size)
        save_weights(net.params, tmp_path / "weights.npz")
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


SHAPES = {
    "full batch": JobShape([400, 256, 64, 10], m=3000, epochs=5),
    "mini-batch with a shorter last batch": JobShape(
        [500, 700, 300, 5], m=1500, batch_size=200, optimizer="sgd", epochs=2
    ),
    "adam": JobShape([200, 512, 512, 10], m=2000, batch_size=64, optimizer="adam", epochs=3),
    "gram form": JobShape([4000, 32, 2], m=300, epochs=5, validation_split=0.2),
    "validation split": JobShape(
        [300, 128, 10], m=4000, validation_split=0.5, batch_size=256, epochs=3
    ),
    "momentum, l2, float64, sigmoid output": JobShape(
        [100, 300, 300, 1], m=2000, batch_size=100, optimizer="momentum", l2=0.1, dtype="float64"
    ),
    "tanh, one wide layer": JobShape([100, 2000, 1], m=3000, hidden_activation="tanh", epochs=3),
    "leaky relu": JobShape(
        [100, 2000, 10], m=3000, hidden_activation="leaky_relu", batch_size=500, epochs=3
    ),
    "logistic regression, data-bound": JobShape([784, 1], m=5000, validation_split=0.25),
    "twenty layers": JobShape([64, *[200] * 20, 10], m=1797, validation_split=0.25, epochs=2),
}


@pytest.mark.parametrize("job", SHAPES.values(), ids=SHAPES.keys())
def test_the_estimate_covers_the_measured_peak_and_stays_within_twice_it(job, tmp_path):
    assert job.gram_form == (job.layer_dims[0] == 4000)  # the Gram form shape takes that path

    peak = measured_peak(job, tmp_path)
    estimate = estimate_job_memory(job).total

    detail = f"estimate {human_bytes(estimate)}, measured {human_bytes(peak)}"
    assert peak <= estimate <= 2 * peak, detail
