"""The first layer's Gram form (models/fast/gram.py): when it applies, the same numbers as the plain
products, bit-identical resume, stop requests and divergence in that form."""

import numpy as np
import pytest

from models import Checkpoint, DivergenceError, Network, TrainingStopped, train
from models.fast.gram import GramFirstLayer, gram_form_applies

N_X, M, EPOCHS = 400, 40, 300
GD = {"optimizer": "gd", "learning_rate": 0.05}


def wide_data(seed=0):
    """Few wide examples, row-stored like a loaded dataset: X (n_x, m), labels (1, m), and
    validation data (n_x, 17), (1, 17)."""
    rng = np.random.default_rng(seed)
    rows = rng.random((M, N_X))
    labels = (rows[:, :5].sum(axis=1) > 2.5).astype(np.int64)
    return rows.T, labels[None, :], rng.random((N_X, 17)), rng.integers(0, 2, (1, 17))


def net(dims):
    return Network(dims, "relu", "sigmoid", seed=1, dtype="float64")


def test_it_applies_to_few_wide_examples_whatever_the_epochs():
    assert gram_form_applies(m=209, n_x=12288, n_1=1)  # the cat pictures
    assert gram_form_applies(m=209, n_x=12288, n_1=20)
    assert gram_form_applies(m=150, n_x=625, n_1=1)  # faces' training split
    assert not gram_form_applies(m=1347, n_x=64, n_1=32)  # digits: more examples than inputs
    assert not gram_form_applies(m=200, n_x=625, n_1=8)  # G: over half the data's memory
    assert not gram_form_applies(m=3000, n_x=12288, n_1=1)  # G: as much as 1500 plain epochs
    assert gram_form_applies(m=3000, n_x=12288, n_1=20)  # ... or 75 with 20 units


def test_it_is_used_for_full_batch_gd_only(monkeypatch):
    X, Y, _, _ = wide_data()
    used = []
    original = GramFirstLayer.product
    monkeypatch.setattr(
        GramFirstLayer, "product", lambda self, out: used.append(1) or original(self, out)
    )
    train(net([N_X, 4, 1]), X, Y, epochs=EPOCHS, **GD)
    assert len(used) == EPOCHS
    used.clear()
    train(net([N_X, 4, 1]), X, Y, epochs=EPOCHS, l2=0.1, **GD)
    train(net([N_X, 4, 1]), X, Y, epochs=EPOCHS, batch_size=10, **GD)
    train(net([N_X, 4, 1]), X, Y, epochs=EPOCHS, optimizer="adam", learning_rate=0.01)
    assert used == []


@pytest.mark.parametrize("dims", [[N_X, 1], [N_X, 8, 3, 1]])
def test_history_and_weights_equal_the_plain_engines(dims):
    X, Y, X_val, Y_val = wide_data()
    options = {"epochs": EPOCHS, "X_val": X_val, "Y_val": Y_val, **GD}
    gram_net = net(dims)
    gram_history = train(gram_net, X, Y, **options)
    plain_net = net(dims)
    plain_history = train(plain_net, X, Y, engine="plain", **options)
    assert gram_history.keys() == plain_history.keys()
    for name, values in plain_history.items():
        np.testing.assert_allclose(gram_history[name], values, rtol=1e-10, atol=1e-12)
    for name, value in plain_net.params.items():
        np.testing.assert_allclose(gram_net.params[name], value, rtol=1e-10, atol=1e-12)
    assert plain_history["cost"][-1] < plain_history["cost"][0] / 2  # it did learn


def test_logistic_regression_in_gram_form_still_starts_at_ln_2():
    X, Y, _, _ = wide_data()
    history = train(Network([N_X, 1], init="zeros", dtype="float64"), X, Y, epochs=EPOCHS, **GD)
    assert abs(history["cost"][0] - np.log(2)) < 1e-12


def test_resume_in_gram_form_is_bit_identical_and_its_checkpoint_holds_w1():
    X, Y, X_val, Y_val = wide_data()
    options = {"epochs": EPOCHS, "X_val": X_val, "Y_val": Y_val, **GD}
    whole = net([N_X, 8, 3, 1])
    whole_history = train(whole, X, Y, **options)

    saved = []
    first = net([N_X, 8, 3, 1])

    class Keep:
        def on_checkpoint(self, checkpoint):
            saved.append(checkpoint)

    train(first, X, Y, checkpoint_every=120, callbacks=[Keep()], **options)
    checkpoint = Checkpoint.from_bytes(saved[0].to_bytes())
    assert checkpoint.epoch == 120 and "gram_C" in checkpoint.optimizer_state

    resumed = net([N_X, 8, 3, 1])
    resumed_history = train(resumed, X, Y, resume_from=checkpoint, **options)
    # Bit for bit (NaN only where both have it: the update ratio of W[1] all zeros).
    assert resumed_history.keys() == whole_history.keys()
    for name, values in whole_history.items():
        np.testing.assert_array_equal(resumed_history[name], values, err_msg=name)
    for name, value in whole.params.items():
        assert np.array_equal(resumed.params[name], value), name

    # The checkpoint's W1 is the network's weights at epoch 120, as the plain engine has them.
    at_120 = net([N_X, 8, 3, 1])
    train(at_120, X, Y, engine="plain", **{**options, "epochs": 120})
    np.testing.assert_allclose(checkpoint.params["W1"], at_120.params["W1"], rtol=1e-10)


@pytest.mark.parametrize("dims", [[N_X, 1], [N_X, 3, 1], [N_X, 4, 2, 1]])
def test_a_shorter_first_run_resumed_to_more_epochs_equals_the_whole_run(dims):
    # The pattern: train 40 epochs (epochs=40), then resume to 100. Both runs must take
    # the same form, so the choice cannot depend on the number of epochs asked for.
    X, Y, _, _ = wide_data()
    whole = net(dims)
    whole_history = train(whole, X, Y, epochs=100, **GD)

    saved = []

    class Keep:
        def on_checkpoint(self, checkpoint):
            saved.append(checkpoint)

    train(net(dims), X, Y, epochs=40, checkpoint_every=40, callbacks=[Keep()], **GD)
    assert "gram_C" in saved[-1].optimizer_state  # the case this test is about
    resumed = net(dims)
    resumed_history = train(resumed, X, Y, epochs=100, resume_from=saved[-1], **GD)
    # Bit for bit (NaN only where both have it: the update ratio of W[1] all zeros).
    assert resumed_history.keys() == whole_history.keys()
    for name, values in whole_history.items():
        np.testing.assert_array_equal(resumed_history[name], values, err_msg=name)
    for name, value in whole.params.items():
        assert np.array_equal(resumed.params[name], value), name


def test_a_checkpoint_without_the_first_layers_product_resumes_to_the_same_numbers():
    # Checkpoints made before W[1] X was carried: it is computed afresh as P₀ + C G, so the
    # run goes on with other rounding, not other numbers.
    X, Y, _, _ = wide_data()
    whole_history = train(net([N_X, 4, 1]), X, Y, epochs=100, **GD)
    saved = []

    class Keep:
        def on_checkpoint(self, checkpoint):
            saved.append(checkpoint)

    train(net([N_X, 4, 1]), X, Y, epochs=40, checkpoint_every=40, callbacks=[Keep()], **GD)
    older = saved[-1]
    del older.optimizer_state["gram_product"]
    resumed_history = train(net([N_X, 4, 1]), X, Y, epochs=100, resume_from=older, **GD)
    for name, values in whole_history.items():
        np.testing.assert_allclose(resumed_history[name], values, rtol=1e-10, err_msg=name)


def test_non_finite_inputs_are_named_in_the_gram_form_too():
    X, Y, _, _ = wide_data()
    X = X.copy()
    X[5, 11] = np.nan
    with pytest.raises(ValueError, match=r"X holds non-finite values .* first in column 11"):
        train(net([N_X, 4, 1]), X, Y, epochs=3, **GD)


def test_a_stop_request_leaves_the_formed_weights_and_resumes_identically():
    X, Y, _, _ = wide_data()
    whole = net([N_X, 8, 1])
    whole_history = train(whole, X, Y, epochs=EPOCHS, **GD)
    stopped = net([N_X, 8, 1])
    epochs_seen = []
    with pytest.raises(TrainingStopped) as stop:
        train(stopped, X, Y, epochs=EPOCHS, should_stop=lambda: len(epochs_seen) >= 50,
              callbacks=[type("C", (), {"on_epoch_end": lambda s, e, m: epochs_seen.append(e)})()],
              **GD)  # fmt: skip
    checkpoint = stop.value.checkpoint
    assert np.array_equal(stopped.params["W1"], checkpoint.params["W1"])
    resumed = net([N_X, 8, 1])
    assert train(resumed, X, Y, epochs=EPOCHS, resume_from=checkpoint, **GD) == whole_history
    assert np.array_equal(resumed.params["W1"], whole.params["W1"])


def test_divergence_in_gram_form_names_the_epoch():
    X, Y, _, _ = wide_data()
    with pytest.raises(DivergenceError, match="learning rate") as error:
        network = Network([N_X, 8, 1], seed=1)  # float32: the weights overflow within epochs
        train(network, X * 1e3, Y, epochs=EPOCHS, optimizer="gd", learning_rate=1e30)
    assert 0 <= error.value.epoch < EPOCHS


def test_gradient_norm_from_g_is_the_norm_of_the_formed_gradient():
    X, *_ = wide_data()
    network = net([N_X, 6, 1])
    rows = np.ascontiguousarray(X.T)
    gram = GramFirstLayer(network.params["W1"], rows)
    dZ1 = np.random.default_rng(2).standard_normal((6, M))
    assert gram.gradient_norm(dZ1) == pytest.approx(np.linalg.norm(dZ1 @ rows), rel=1e-12)
    gram.step(dZ1, 0.5)
    np.testing.assert_allclose(gram.weights(), network.params["W1"] - 0.5 * dZ1 @ rows)


def test_in_float32_it_is_as_accurate_as_the_plain_engine():
    """Pixel-like inputs (not centred): against a float64 run, the float32 Gram form strays no
    further than the float32 plain engine does."""
    rng = np.random.default_rng(5)
    rows = rng.random((100, 3072))
    X, Y = rows.T, (rows[:, :50].mean(axis=1) > 0.5).astype(np.int64)[None, :]
    options = {"epochs": 200, "optimizer": "gd", "learning_rate": 0.01}

    def run(dtype, engine="fast"):
        network = Network([3072, 8, 1], seed=3, dtype=dtype)
        history = train(network, X, Y, engine=engine, **options)
        return np.array(history["cost"] + history["grad_norm.W1"]), network.params["W1"]

    gram_history, gram_W1 = run("float32")
    plain_history, plain_W1 = run("float32", engine="plain")
    exact_history, exact_W1 = run("float64")
    history_error = np.abs(gram_history - exact_history).max()
    assert history_error <= 2 * np.abs(plain_history - exact_history).max() + 1e-7
    assert np.abs(gram_W1 - exact_W1).max() <= 2 * np.abs(plain_W1 - exact_W1).max() + 1e-7
