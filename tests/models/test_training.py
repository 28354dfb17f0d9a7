"""The training loop: history, determinism, checkpoints and bit-identical resume, stopping,
callbacks, divergence, and the errors for bad arguments."""

import inspect
import math

import numpy as np
import pytest

import models.fast.blas
from models import Checkpoint, DivergenceError, Network, TrainingStopped, train
from models.batches import Batches


def blobs(m=120, n_x=6, k=3, seed=0):
    """k Gaussian blobs, row-stored like a loaded dataset: X (n_x, m), labels (1, m)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, m)
    centres = rng.standard_normal((k, n_x)) * 3
    rows = (centres[labels] + rng.standard_normal((m, n_x))).astype(np.float32)
    return rows.T, labels[None, :]


SETTINGS = {
    "gd": {"optimizer": "gd", "learning_rate": 0.1},
    "sgd": {"optimizer": "sgd", "learning_rate": 0.05, "batch_size": 32},
    "momentum": {"optimizer": "momentum", "learning_rate": 0.05, "batch_size": 50},
    "adam": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 16, "l2": 0.1},
}


def softmax_net(dtype="float64"):
    return Network([6, 8, 5, 3], output="softmax", seed=3, dtype=dtype)


def test_defaults_are_the_seed_models_as_the_design_shows_them():
    # DESIGN.md section 3: train(net, X, Y, optimizer="gd", learning_rate=0.005, epochs=2000,
    # batch_size=None, X_val=None, Y_val=None, ...), the course's logistic regression.
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(train).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    expected = {"optimizer": "gd", "learning_rate": 0.005, "epochs": 2000, "batch_size": None}
    assert {name: defaults[name] for name in expected} == expected
    assert defaults["X_val"] is None and defaults["Y_val"] is None


def test_history_has_one_value_per_epoch_for_every_metric():
    X, Y = blobs()
    history = train(
        softmax_net(), X, Y, epochs=7, X_val=X[:, :30], Y_val=Y[:, :30], **SETTINGS["sgd"]
    )
    assert sorted(history) == [
        "cost",
        "grad_norm.W1",
        "grad_norm.W2",
        "grad_norm.W3",
        "learning_rate",
        "train_accuracy",
        "update_ratio.W1",
        "update_ratio.W2",
        "update_ratio.W3",
        "val_accuracy",
    ]
    assert all(len(values) == 7 for values in history.values())


def test_cost_falls_and_accuracy_rises_while_learning_separable_blobs():
    X, Y = blobs()
    history = train(softmax_net(), X, Y, epochs=60, **SETTINGS["gd"])
    assert history["cost"][-1] < history["cost"][0] / 4
    assert history["train_accuracy"][-1] > 0.95


def test_epoch_metrics_describe_the_network_before_that_epochs_update():
    X, Y = blobs()
    net = softmax_net()
    expected_cost, expected_accuracy = net.cost(X, Y), float(np.mean(net.predict(X) == Y))
    history = train(net, X, Y, epochs=3, X_val=X, Y_val=Y, **SETTINGS["gd"])
    assert history["cost"][0] == pytest.approx(expected_cost, rel=1e-12)
    assert history["train_accuracy"][0] == expected_accuracy
    assert history["val_accuracy"][0] == expected_accuracy


def test_gradient_norms_are_those_of_the_first_batch_gradient():
    X, Y = blobs()
    net = softmax_net()
    grads = net.gradients(X, Y)
    history = train(net, X, Y, epochs=1, **SETTINGS["gd"])
    assert history["grad_norm.W2"][0] == pytest.approx(np.linalg.norm(grads["dW2"]), rel=1e-12)


@pytest.mark.parametrize("engine", ["fast", "plain"])
def test_update_ratios_are_the_first_updates_norm_over_the_weights_before_it(engine):
    X, Y = blobs()
    net = softmax_net()
    before, grads = {k: v.copy() for k, v in net.params.items()}, net.gradients(X, Y)
    history = train(net, X, Y, epochs=1, engine=engine, **SETTINGS["gd"])
    rate = SETTINGS["gd"]["learning_rate"]
    for layer in (1, 2, 3):
        W, dW = before[f"W{layer}"], grads[f"dW{layer}"]
        expected = rate * np.linalg.norm(dW) / np.linalg.norm(W)  # gradient descent's step
        assert history[f"update_ratio.W{layer}"][0] == pytest.approx(expected, rel=1e-6)


def test_an_update_ratio_of_weights_all_zero_is_nan_then_a_number():
    X, Y = blobs()
    net = Network([X.shape[0], 3], "relu", "softmax", init="zeros")
    history = train(net, X, Y, epochs=2, **SETTINGS["gd"])
    first, second = history["update_ratio.W1"]
    assert math.isnan(first) and second > 0


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_same_seed_gives_identical_history_and_weights(name):
    X, Y = blobs()
    a, b = softmax_net("float32"), softmax_net("float32")
    history_a = train(a, X, Y, epochs=12, **SETTINGS[name])
    history_b = train(b, X, Y, epochs=12, **SETTINGS[name])
    assert history_a == history_b
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])


def test_another_shuffling_seed_gives_another_history():
    X, Y = blobs()
    a = train(softmax_net(), X, Y, epochs=3, seed=1, **SETTINGS["sgd"])
    b = train(softmax_net(), X, Y, epochs=3, seed=2, **SETTINGS["sgd"])
    assert a["cost"][1:] != b["cost"][1:]


class Saver:
    def __init__(self):
        self.checkpoints = []

    def on_checkpoint(self, checkpoint):
        self.checkpoints.append(checkpoint)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_resume_from_a_checkpoint_is_bit_identical_to_an_uninterrupted_run(name, tmp_path):
    X, Y = blobs()
    whole = softmax_net()
    whole_history = train(whole, X, Y, epochs=100, **SETTINGS[name])

    first = softmax_net()
    saver = Saver()
    train(first, X, Y, epochs=40, checkpoint_every=40, callbacks=[saver], **SETTINGS[name])
    saver.checkpoints[-1].save(tmp_path / "ckpt.npz")

    resumed = softmax_net()  # a fresh process would start from fresh weights
    history = train(
        resumed,
        X,
        Y,
        epochs=100,
        resume_from=Checkpoint.load(tmp_path / "ckpt.npz"),
        **SETTINGS[name],
    )
    assert history == whole_history
    for key in whole.params:
        np.testing.assert_array_equal(resumed.params[key], whole.params[key])


def test_checkpoints_come_every_checkpoint_every_epochs_with_their_epoch():
    X, Y = blobs()
    saver = Saver()
    train(softmax_net(), X, Y, epochs=10, checkpoint_every=3, callbacks=[saver], **SETTINGS["gd"])
    assert [c.epoch for c in saver.checkpoints] == [3, 6, 9]
    assert len(saver.checkpoints[1].history["cost"]) == 6


def test_resuming_with_other_settings_is_refused():
    X, Y = blobs()
    saver = Saver()
    train(softmax_net(), X, Y, epochs=2, checkpoint_every=2, callbacks=[saver], **SETTINGS["gd"])
    with pytest.raises(ValueError, match=r"learning_rate: checkpoint 0\.1 vs now 0\.2"):
        train(
            softmax_net(),
            X,
            Y,
            epochs=4,
            optimizer="gd",
            learning_rate=0.2,
            resume_from=saver.checkpoints[0],
        )


def test_stop_request_raises_with_a_checkpoint_that_resumes_identically():
    X, Y = blobs()
    whole = softmax_net()
    whole_history = train(whole, X, Y, epochs=20, **SETTINGS["momentum"])
    epochs_seen = []

    class Recorder:
        def on_epoch_end(self, epoch, metrics):
            epochs_seen.append(epoch)

    stopped = softmax_net()
    with pytest.raises(TrainingStopped) as stop:
        train(
            stopped,
            X,
            Y,
            epochs=20,
            callbacks=[Recorder()],
            should_stop=lambda: len(epochs_seen) == 8,
            **SETTINGS["momentum"],
        )
    assert stop.value.checkpoint.epoch == 8
    assert epochs_seen == list(range(8))
    history = train(
        softmax_net(), X, Y, epochs=20, resume_from=stop.value.checkpoint, **SETTINGS["momentum"]
    )
    assert history == whole_history


def test_on_epoch_end_receives_each_epochs_metrics():
    X, Y = blobs()
    seen = []

    class Recorder:
        def on_epoch_end(self, epoch, metrics):
            seen.append((epoch, metrics["cost"]))

    history = train(softmax_net(), X, Y, epochs=4, callbacks=[Recorder()], **SETTINGS["gd"])
    assert seen == list(enumerate(history["cost"]))


def test_divergence_stops_training_with_the_epoch_and_the_likely_cause():
    X, Y = blobs()
    X = X * 1e3  # unscaled inputs and a huge rate: the weights blow up within a few epochs
    with pytest.raises(DivergenceError, match=r"diverged at epoch \d+: .*learning rate 1e\+06"):
        train(
            Network([6, 8, 3], output="softmax", seed=0),
            X,
            Y,
            optimizer="gd",
            learning_rate=1e6,
            epochs=50,
        )


def test_divergence_error_carries_the_epoch():
    X, Y = blobs()
    with pytest.raises(DivergenceError) as error:
        train(
            Network([6, 8, 3], output="softmax", seed=0),
            X * 1e3,
            Y,
            optimizer="gd",
            learning_rate=1e6,
            epochs=50,
        )
    assert f"epoch {error.value.epoch}:" in str(error.value)
    assert 0 < error.value.epoch < 50


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("settings", ["gd", "sgd"])
def test_non_finite_inputs_are_named_as_the_cause_not_the_learning_rate(bad, settings):
    X, Y = blobs()
    X = X.copy()
    X[2, 7] = bad
    with pytest.raises(ValueError, match=r"X holds non-finite values .* first in column 7"):
        train(softmax_net(), X, Y, epochs=3, **SETTINGS[settings])


def test_non_finite_validation_inputs_are_refused():
    X, Y = blobs()
    X_val = X[:, :10].copy()
    X_val[0, 3] = np.nan
    with pytest.raises(ValueError, match="X_val holds non-finite values"):
        train(softmax_net(), X, Y, X_val=X_val, Y_val=Y[:, :10], epochs=1, **SETTINGS["gd"])


def test_large_finite_weights_whose_sum_overflows_are_not_divergence():
    X, Y = blobs(n_x=40)
    net = Network([40, 3], output="softmax", seed=0, dtype="float32")
    W1 = np.full_like(net.params["W1"], 1e37)  # finite, but their float32 sum is inf
    with np.errstate(over="ignore"):
        assert not np.isfinite(W1.sum())
    net.params = {**net.params, "W1": W1}
    # Small inputs keep the product finite (Z ~ 1e35), so the cost and the update are too.
    history = train(net, X * 1e-3, Y, epochs=2, optimizer="gd", learning_rate=0.1)
    assert all(np.isfinite(history["cost"]))


def test_learning_rate_decay_is_recorded_per_epoch():
    X, Y = blobs()
    history = train(softmax_net(), X, Y, epochs=4, decay_rate=1.0, decay_every=2, **SETTINGS["gd"])
    assert history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_a_row_stored_dataset_is_trained_without_copying_it():
    X, Y = blobs()
    assert np.shares_memory(Batches(softmax_net("float32"), X, Y, 32).rows, X)


def test_a_full_batch_is_the_same_arrays_every_epoch():
    """One A0 view for all epochs, so the fast engine's prepared products are made once."""
    X, Y = blobs()
    batches, rng = Batches(softmax_net(), X, Y, None), np.random.default_rng(0)
    first, second = next(batches.epoch(rng)), next(batches.epoch(rng))
    assert all(a is b for a, b in zip(first, second, strict=True))


def test_last_partial_batch_is_trained_on_too():
    X, Y = blobs(m=100)
    net = softmax_net()
    history = train(net, X, Y, epochs=1, optimizer="sgd", learning_rate=0.0, batch_size=64)
    # learning rate 0: the weights never move, so the epoch's mean batch cost is the full cost
    assert history["cost"][0] == pytest.approx(net.cost(X, Y), rel=1e-12)


def test_zero_initialized_logistic_regression_starts_at_ln_2_in_history():
    X, Y = blobs(k=2)
    history = train(Network([6, 1], dtype="float64"), X, Y, epochs=2, learning_rate=0.01)
    assert abs(history["cost"][0] - math.log(2)) < 1e-12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "sgd"}, "'sgd' trains on mini-batches: give a batch_size"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"X_val": np.zeros((6, 2))}, "give both X_val and Y_val"),
        ({"X_val": np.zeros((5, 2)), "Y_val": np.zeros((1, 2))}, r"X_val must have shape \(6, m\)"),
        ({"X_val": np.zeros((6, 2)), "Y_val": np.zeros((1, 3))}, "Y_val has 3 examples, X has 2"),
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
    ],
)
def test_bad_training_arguments_raise_value_errors_that_say_why(kwargs, message):
    X, Y = blobs()
    with pytest.raises(ValueError, match=message):
        train(softmax_net(), X, Y, epochs=1, **kwargs)


def test_labels_outside_the_outputs_classes_are_refused():
    X, Y = blobs(k=3)
    with pytest.raises(ValueError, match=r"Y labels must be in \[0, 2\) for this output, got 0..2"):
        train(Network([6, 1]), X, Y, epochs=1)


@pytest.mark.parametrize("batch_size", [45, 32, 7])
def test_steps_fused_into_the_weight_products_train_as_separate_steps_do(batch_size, monkeypatch):
    """sgd takes its weight steps inside gemm (models/fast/blas.py) after each epoch's first batch;
    without that gemm (NumPy on another BLAS) the same training gives the same numbers."""
    X, Y = blobs(m=90)
    settings = {"optimizer": "sgd", "learning_rate": 0.05, "batch_size": batch_size}
    gemm, calls = models.fast.blas._gemm(np.dtype("float64")), []
    if gemm is None:
        pytest.skip("NumPy's own OpenBLAS is not reachable here: add_product always falls back")
    monkeypatch.setattr("models.fast.blas._gemm", lambda dtype: lambda *a: calls.append(gemm(*a)))
    fused_net = softmax_net()
    fused = train(fused_net, X, Y, epochs=12, **settings)
    batches = -(-90 // batch_size)
    # Every W, every batch but each epoch's first. These layers' forward products are too small
    # for the one-gemm route (Workspace.forward_product): the calls are the weight steps'.
    assert len(calls) == 12 * (batches - 1) * 3
    monkeypatch.setattr("models.fast.blas._gemm", lambda dtype: None)
    separate_net = softmax_net()
    separate = train(separate_net, X, Y, epochs=12, **settings)

    for name in fused:
        np.testing.assert_allclose(fused[name], separate[name], rtol=1e-12, err_msg=name)
    for name, p in separate_net.params.items():
        np.testing.assert_allclose(fused_net.params[name], p, rtol=1e-12, atol=1e-14)
    assert fused["cost"][-1] < fused["cost"][0] / 2


def test_a_zero_learning_rate_leaves_the_weights_as_they_were():
    X, Y = blobs()
    net = softmax_net()
    before = {name: p.copy() for name, p in net.params.items()}
    train(net, X, Y, epochs=2, optimizer="sgd", learning_rate=0.0, batch_size=32)
    assert all(np.array_equal(net.params[name], p) for name, p in before.items())
