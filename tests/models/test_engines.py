"""The fast engine is held to the plain one (models/plain.py, the seed's equations as written):
in float64, the same cost curve and the same weights to 1e-10 relative, on every model,
optimizer and batch mode, the Gram form and the fused steps included."""

import ast
from pathlib import Path

import numpy as np
import pytest

from models import Network, gradient_check, plain, train
from models.fast.gram import gram_form_applies

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"

MODELS = {  # hidden layer sizes, hidden activation, output
    "logistic regression": ([], "relu", "sigmoid"),
    "relu mlp": ([7, 5], "relu", "sigmoid"),
    "tanh softmax": ([6], "tanh", "softmax"),
    "leaky relu softmax": ([8, 4], "leaky_relu", "softmax"),
    "sigmoid hidden": ([5], "sigmoid", "sigmoid"),
}
TRAININGS = {
    "gd full batch": {"optimizer": "gd", "learning_rate": 0.1},
    "gd full batch, l2": {"optimizer": "gd", "learning_rate": 0.1, "l2": 0.3},
    "sgd": {"optimizer": "sgd", "learning_rate": 0.05, "batch_size": 16},
    "momentum mini-batch, decay": {
        "optimizer": "momentum",
        "learning_rate": 0.05,
        "batch_size": 20,
        "decay_rate": 0.1,
    },
    "adam full batch": {"optimizer": "adam", "learning_rate": 0.01},
    "adam mini-batch, l2": {
        "optimizer": "adam",
        "learning_rate": 0.01,
        "batch_size": 25,
        "l2": 0.1,
    },
}


def data(n_x: int, m: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_x, m))
    labels = (X[:3].sum(axis=0) > 0).astype(np.int64) + (X[-1] > 1) * (classes > 2)
    return X, labels[None, :] % classes


def trained(model: str, training: dict, engine: str, n_x: int = 12, m: int = 70):
    hidden, activation, output = MODELS[model]
    classes = 3 if output == "softmax" else 2
    sizes = [n_x, *hidden, classes if output == "softmax" else 1]
    net = Network(sizes, activation, output, seed=3, dtype="float64")
    X, Y = data(n_x, m, classes)
    X_val, Y_val = data(n_x, 30, classes, seed=1)
    history = train(net, X, Y, epochs=25, X_val=X_val, Y_val=Y_val, seed=4, engine=engine,
                    **training)  # fmt: skip
    return history, net.params


def assert_close(fast, plain_values, what):
    """Within 1e-10 of the plain values, relative to their largest magnitude; NaN where they
    are (an update ratio of weights all zero)."""
    fast, plain_values = np.asarray(fast), np.asarray(plain_values)
    nan = np.isnan(plain_values)
    assert np.array_equal(np.isnan(fast), nan), f"{what}: NaN elsewhere"
    fast, plain_values = fast[~nan], plain_values[~nan]
    worst = float(np.max(np.abs(fast - plain_values))) / float(np.max(np.abs(plain_values)))
    assert worst <= 1e-10, f"{what}: relative difference {worst:.2e}"


@pytest.mark.parametrize("training", TRAININGS)
@pytest.mark.parametrize("model", MODELS)
def test_the_fast_engine_trains_as_the_plain_one(model, training):
    fast_history, fast_params = trained(model, TRAININGS[training], "fast")
    plain_history, plain_params = trained(model, TRAININGS[training], "plain")

    assert sorted(fast_history) == sorted(plain_history)
    for name in plain_history:
        assert_close(fast_history[name], plain_history[name], name)
    for name in plain_params:
        assert_close(fast_params[name], plain_params[name], name)
    assert fast_history["val_accuracy"] == plain_history["val_accuracy"]


@pytest.mark.parametrize("model", ["logistic regression", "relu mlp"])
def test_the_gram_form_is_held_to_the_plain_engine_too(model):
    """Full-batch gd on few, wide examples runs the fast engine's first layer in its Gram form
    (W[1] never updated as W)."""
    n_x, m, units = 400, 70, MODELS[model][0][:1] or [1]
    assert gram_form_applies(m, n_x, units[0])
    fast_history, fast_params = trained(model, TRAININGS["gd full batch"], "fast", n_x, m)
    plain_history, plain_params = trained(model, TRAININGS["gd full batch"], "plain", n_x, m)

    assert_close(fast_history["cost"], plain_history["cost"], "cost")
    # W[1] is never formed: its norm and its step's come from the Gram form's identities.
    assert_close(fast_history["update_ratio.W1"], plain_history["update_ratio.W1"], "ratio")
    for name in plain_params:
        assert_close(fast_params[name], plain_params[name], name)


def test_plain_backward_is_the_numerical_gradient_of_plain_cost():
    net = Network([5, 4, 3], "tanh", "softmax", seed=1, dtype="float64")
    X, Y = data(5, 9, 3)
    targets = net.targets(Y)

    def J(params):  # noqa: N802 (the course's J)
        A, _ = plain.forward(params, X, "tanh", "softmax")
        return plain.cost(A, targets, "softmax", params, l2=0.2)

    A, cache = plain.forward(net.params, X, "tanh", "softmax")
    grads = plain.backward(net.params, cache, A, targets, "tanh", l2=0.2)
    for name, theta in net.params.items():
        numeric = np.zeros_like(theta)
        for index in np.ndindex(theta.shape):
            saved = theta[index]
            theta[index] = saved + 1e-6
            up = J(net.params)
            theta[index] = saved - 1e-6
            down = J(net.params)
            theta[index] = saved
            numeric[index] = (up - down) / 2e-6
        np.testing.assert_allclose(grads["d" + name], numeric, rtol=1e-6, atol=1e-9)


def test_gradient_check_trusts_the_plain_wing():
    net = Network([5, 4, 1], "relu", "sigmoid", seed=1, dtype="float64")
    X, Y = data(5, 9, 2)
    assert gradient_check(net, X, Y) < 1e-7


def test_an_unknown_engine_is_refused_naming_the_known_ones():
    net = Network([3, 1], output="sigmoid", dtype="float64")
    X, Y = data(3, 5, 2)
    with pytest.raises(ValueError, match="unknown engine 'turbo'; known: fast, plain"):
        train(net, X, Y, epochs=1, engine="turbo")


def test_a_checkpoint_of_one_engine_resumes_in_the_other():
    net = Network([12, 6, 1], "relu", "sigmoid", seed=3, dtype="float64")
    X, Y = data(12, 70, 2)
    kept = []

    class Keep:
        def on_checkpoint(self, checkpoint):
            kept.append(checkpoint)

    settings = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 16, "seed": 2}
    whole = train(net, X, Y, epochs=20, engine="plain", **settings)
    first = Network([12, 6, 1], "relu", "sigmoid", seed=3, dtype="float64")
    train(first, X, Y, epochs=10, engine="fast", checkpoint_every=10, callbacks=[Keep()],
          **settings)  # fmt: skip
    resumed = Network([12, 6, 1], "relu", "sigmoid", seed=3, dtype="float64")
    history = train(resumed, X, Y, epochs=20, engine="plain", resume_from=kept[0], **settings)

    assert_close(history["cost"], whole["cost"], "cost")
    assert_close(resumed.params["W1"], net.params["W1"], "W1")


@pytest.mark.parametrize("module", ["plain.py", "plain_engine.py", "training.py"])
def test_the_plain_wing_and_the_loop_never_import_the_fast_wing_but_through_its_engine(module):
    """The plain wing imports NumPy and the shared modules only; the training loop picks an
    engine once (models/training.py ENGINES) and names no part of the fast wing but it."""
    tree = ast.parse((MODELS_DIR / module).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    fast = {name for name in imported if name and name.startswith("models.fast")}
    assert fast == ({"models.fast.engine"} if module == "training.py" else set())
    if module == "plain.py":
        assert imported == {"numpy"}
