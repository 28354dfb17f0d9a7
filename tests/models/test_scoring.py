"""Scoring in batches: forward, cost and predict of a big set, the validation pass inside
``train`` and the worker's final metrics cost the memory of one batch, and give the numbers
a single pass gives (the same classes; the cost up to the order of its sum)."""

import tracemalloc

import numpy as np
import pytest

from models import Dataset, Network, train
from workers.data import TrainingData
from workers.final_metrics import final_metrics

HIDDEN = 2000


def blobs(m, n_x=20, k=3, seed=0, dtype=np.float32):
    """k Gaussian blobs, row-stored: X (n_x, m), labels (1, m)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, m)
    centres = rng.standard_normal((k, n_x)) * 2
    rows = (centres[labels] + rng.standard_normal((m, n_x))).astype(dtype)
    return rows.T, labels[None, :]


def wide_net(dtype="float32", output="softmax", k=3):
    return Network([20, HIDDEN, k], output=output, seed=1, dtype=dtype)


def peak_bytes(call) -> int:
    """The peak bytes traced while ``call()`` runs, above what was traced before it."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def one_pass_predictions(net, X):
    return net.predict(X, batch_size=X.shape[1])


def test_the_scoring_batch_is_the_training_batch_at_most_the_cap():
    from models.batches import MAX_SCORING_BATCH, scoring_batch

    assert scoring_batch(50_000) == MAX_SCORING_BATCH
    assert scoring_batch(50_000, 64) == 64
    assert scoring_batch(300, None) == 300
    assert scoring_batch(10, 64) == 10
    assert scoring_batch(0) == 1


@pytest.mark.parametrize("batch_size", [1, 7, 64, None])
@pytest.mark.parametrize(("output", "k"), [("softmax", 3), ("sigmoid", 1)])
def test_batches_classify_every_column_as_one_pass_does(batch_size, output, k):
    X, _ = blobs(3000, k=max(k, 2))
    net = wide_net(output=output, k=k)

    predicted = net.predict(X, batch_size=batch_size)

    np.testing.assert_array_equal(predicted, one_pass_predictions(net, X))
    probabilities = net.forward(X, batch_size=batch_size)
    np.testing.assert_allclose(probabilities, net.forward(X, batch_size=3000), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 7, 1000, None])
def test_the_cost_in_batches_is_the_one_pass_cost_up_to_summation_order(batch_size):
    X, labels = blobs(2500)
    net = wide_net(dtype="float64")

    cost = net.cost(X, labels, l2=0.1, batch_size=batch_size)

    assert cost == pytest.approx(net.cost(X, labels, l2=0.1, batch_size=2500), rel=1e-12)


def test_a_single_batch_gives_the_one_pass_cost_bit_for_bit():
    X, labels = blobs(500)
    net = wide_net()
    assert net.cost(X, labels) == net.cost(X, labels, batch_size=500)


def test_predicting_a_big_set_costs_a_batchs_memory_not_the_sets():
    X, _ = blobs(20_000)
    net = wide_net()
    whole_set_activations = HIDDEN * X.shape[1] * 4  # what one pass held: 160 MB

    peak = peak_bytes(lambda: net.predict(X))

    assert peak < whole_set_activations / 8, peak


def test_the_validation_pass_inside_train_costs_a_batchs_memory(tmp_path):
    X, Y = blobs(500)
    X_val, Y_val = blobs(20_000, seed=1)
    whole_set_activations = HIDDEN * X_val.shape[1] * 4

    def train_with_validation():
        train(
            wide_net(), X, Y, optimizer="sgd", learning_rate=0.01, epochs=2, batch_size=50,
            X_val=X_val, Y_val=Y_val,
        )  # fmt: skip

    peak = peak_bytes(train_with_validation)

    assert peak < whole_set_activations / 8, peak


def test_the_validation_accuracy_inside_train_is_that_of_one_pass():
    X, Y = blobs(400)
    X_val, Y_val = blobs(3000, seed=1)
    net = wide_net("float64")
    before = float(np.mean(one_pass_predictions(net, X_val) == Y_val))

    history = train(
        net, X, Y, optimizer="sgd", learning_rate=0.01, epochs=1, batch_size=32,
        X_val=X_val, Y_val=Y_val,
    )  # fmt: skip

    assert history["val_accuracy"][0] == before


def test_the_workers_final_metrics_cost_a_batchs_memory_with_one_pass_numbers():
    X, Y = blobs(20_000)
    X_val, Y_val = blobs(5_000, seed=1)
    net = wide_net()
    dataset = Dataset("blobs", X, Y, ("a", "b", "c"), (20,))
    data = TrainingData(dataset, "sha", None, X, Y, X_val, Y_val)
    whole_set_activations = HIDDEN * X.shape[1] * 4

    metrics = {}
    peak = peak_bytes(lambda: metrics.update(final_metrics(net, data, 0.0, batch_size=64)))

    assert peak < whole_set_activations / 8, peak
    assert metrics["train_accuracy"] == float(np.mean(one_pass_predictions(net, X) == Y))
    assert metrics["val_accuracy"] == float(np.mean(one_pass_predictions(net, X_val) == Y_val))
    assert metrics["cost"] == pytest.approx(net.cost(X, Y, batch_size=20_000), rel=1e-5)
