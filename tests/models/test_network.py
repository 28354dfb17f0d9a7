"""The network: worked forward/backward examples by hand, the seed's logistic regression,
shapes, parameters and their validation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_array_equal

from models import Network, train
from models.fast.workspace import batch_buffer
from models.labels import one_hot_labels


def sigma(z):
    return 1 / (1 + math.exp(-z))


def two_layer_worked_example():
    """x = (1, 2); W1 = [[1, -1], [0.5, 2]], b1 = (0, -1); W2 = [[2, 1]], b2 = -3; y = 1."""
    net = Network([2, 2, 1], hidden_activation="relu", output="sigmoid", dtype="float64")
    net.params = {
        "W1": [[1.0, -1.0], [0.5, 2.0]],
        "b1": [[0.0], [-1.0]],
        "W2": [[2.0, 1.0]],
        "b2": [[-3.0]],
    }
    return net, np.array([[1.0], [2.0]]), np.array([[1]])


def test_forward_pass_matches_hand_computation():
    net, x, _ = two_layer_worked_example()
    # Z1 = (1·1 - 1·2 + 0, 0.5·1 + 2·2 - 1) = (-1, 3.5); A1 = relu(Z1) = (0, 3.5)
    # Z2 = 2·0 + 1·3.5 - 3 = 0.5; A2 = σ(0.5)
    assert net.forward(x)[0, 0] == pytest.approx(sigma(0.5), rel=1e-15)


def test_cost_matches_hand_computation():
    net, x, y = two_layer_worked_example()
    assert net.cost(x, y) == pytest.approx(-math.log(sigma(0.5)), rel=1e-14)


def test_gradients_match_hand_computation():
    net, x, y = two_layer_worked_example()
    g = net.gradients(x, y)
    d = sigma(0.5) - 1  # dZ2 = A2 - y
    np.testing.assert_allclose(g["dW2"], [[0.0, 3.5 * d]], rtol=1e-14)  # dZ2 · A1ᵀ
    np.testing.assert_allclose(g["db2"], [[d]], rtol=1e-14)
    # dA1 = W2ᵀ dZ2 = (2d, d); relu'(Z1) = (0, 1) -> dZ1 = (0, d); dW1 = dZ1 · xᵀ
    np.testing.assert_allclose(g["dW1"], [[0.0, 0.0], [d, 2 * d]], rtol=1e-14)
    np.testing.assert_allclose(g["db1"], [[0.0], [d]], rtol=1e-14)


def test_one_gradient_descent_step_of_logistic_regression_matches_hand_computation():
    # The seed's model: w = 0, b = 0, so a = σ(0) = 1/2 for every example.
    X = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]])
    Y = np.array([[1, 0, 1]])
    net = Network([2, 1], output="sigmoid", init="zeros", dtype="float64")
    history = train(net, X, Y, optimizer="gd", learning_rate=0.1, epochs=1)
    # dz = a - y = (-1/2, 1/2, -1/2); dw = X dzᵀ / 3; db = Σ dz / 3
    dw = [(1 * -0.5 + 2 * 0.5 + 3 * -0.5) / 3, (0 * -0.5 + -1 * 0.5 + 1 * -0.5) / 3]
    db = (-0.5 + 0.5 - 0.5) / 3
    np.testing.assert_allclose(net.params["W1"], [[-0.1 * dw[0], -0.1 * dw[1]]], rtol=1e-14)
    np.testing.assert_allclose(net.params["b1"], [[-0.1 * db]], rtol=1e-14)
    assert history["cost"] == [pytest.approx(math.log(2), abs=1e-15)]
    assert history["train_accuracy"] == [pytest.approx(1 / 3)]  # σ(0) = 0.5 predicts class 0


@given(
    X=arrays(np.float64, (4, 9), elements=st.floats(-1e6, 1e6)),
    Y=arrays(np.int64, (1, 9), elements=st.integers(0, 1)),
)
@settings(max_examples=50, deadline=None)
def test_zero_initialized_logistic_regression_costs_ln_2_whatever_the_data(X, Y):
    net = Network([4, 1], output="sigmoid", init="zeros", dtype="float64")
    assert abs(net.cost(X, Y) - math.log(2)) < 1e-12


@pytest.mark.parametrize(
    ("dims", "output"), [([5, 1], "sigmoid"), ([5, 3, 1], "sigmoid"), ([5, 4, 3, 6], "softmax")]
)
def test_shapes_of_params_forward_gradients_and_predictions(dims, output):
    net = Network(dims, output=output, init="he")
    X = np.ones((dims[0], 7), dtype=np.float32)
    Y = np.zeros((1, 7), dtype=np.int64)
    for layer in range(1, len(dims)):
        assert net.params[f"W{layer}"].shape == (dims[layer], dims[layer - 1])
        assert net.params[f"b{layer}"].shape == (dims[layer], 1)
    assert net.forward(X).shape == (dims[-1], 7)
    grads = net.gradients(X, Y)
    assert {k: v.shape for k, v in grads.items()} == {
        "d" + k: v.shape for k, v in net.params.items()
    }
    assert net.predict(X).shape == (1, 7)
    assert net.forward(X).dtype == np.float32


def test_softmax_accepts_labels_or_one_hot_targets_alike():
    net = Network([3, 4, 3], output="softmax", seed=2, dtype="float64")
    X = np.random.default_rng(0).standard_normal((3, 5))
    labels = np.array([[0, 2, 1, 1, 0]])
    assert net.cost(X, labels) == pytest.approx(net.cost(X, np.eye(3)[:, labels[0]]), rel=1e-15)


def test_predict_thresholds_sigmoid_and_takes_argmax_of_softmax():
    binary = Network([1, 1], output="sigmoid", init="zeros", dtype="float64")
    binary.params = {"W1": [[1.0]], "b1": [[0.0]]}
    assert binary.predict(np.array([[-2.0, 0.0, 3.0]])).tolist() == [[0, 0, 1]]
    multi = Network([2, 3], output="softmax", init="random")
    multi.params = {"W1": [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], "b1": [[0.0], [0.0], [0.0]]}
    assert multi.predict(np.array([[5.0, 0.0, -3.0], [0.0, 5.0, -3.0]])).tolist() == [[0, 1, 2]]


def test_same_seed_gives_same_initial_weights_and_float32_matches_float64_draws():
    a = Network([6, 5, 1], init="he", seed=4, dtype="float64")
    b = Network([6, 5, 1], init="he", seed=4, dtype="float64")
    c = Network([6, 5, 1], init="he", seed=4, dtype="float32")
    np.testing.assert_array_equal(a.params["W1"], b.params["W1"])
    np.testing.assert_allclose(c.params["W1"], a.params["W1"], rtol=1e-6)
    assert not np.array_equal(Network([6, 5, 1], seed=5).params["W1"], c.params["W1"])


@pytest.mark.parametrize(
    ("init", "scale"), [("random", 0.01), ("xavier", math.sqrt(1 / 400)), ("he", 0.0707)]
)
def test_initializers_draw_with_their_scale(init, scale):
    W = Network([400, 300, 1], init=init, seed=0, dtype="float64").params["W1"]
    assert W.std() == pytest.approx(scale, rel=0.02)
    assert W.mean() == pytest.approx(0.0, abs=scale * 0.02)


def test_zeros_init_is_refused_when_there_are_hidden_layers():
    with pytest.raises(ValueError, match="zeros' is for logistic regression only"):
        Network([3, 2, 1], init="zeros")


def test_default_init_is_zeros_for_logistic_regression_and_he_for_relu():
    assert Network([3, 1]).init == "zeros"
    assert Network([3, 2, 1], hidden_activation="relu").init == "he"
    assert Network([3, 2, 1], hidden_activation="tanh").init == "xavier"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer_dims": [3]}, "at least 2 positive sizes"),
        ({"layer_dims": [3, 0, 1]}, "at least 2 positive sizes"),
        ({"layer_dims": [3, 2]}, "a sigmoid output has 1 unit"),
        ({"layer_dims": [3, 1], "output": "softmax"}, "softmax output needs >= 2 units"),
        ({"layer_dims": [3, 1], "init": "ones"}, "unknown init 'ones'"),
        ({"layer_dims": [3, 1], "dtype": "float16"}, "dtype must be float32 or float64"),
        ({"layer_dims": [3, 2, 1], "hidden_activation": "gelu"}, "unknown activation 'gelu'"),
    ],
)
def test_bad_network_arguments_raise_value_errors_that_say_why(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Network(**kwargs)


def test_assigning_params_of_the_wrong_shape_is_refused_and_keeps_the_old_ones():
    net = Network([3, 1])
    with pytest.raises(ValueError, match="params must have shapes"):
        net.params = {"W1": np.zeros((2, 3)), "b1": np.zeros((1, 1))}
    assert net.params["W1"].shape == (1, 3)


def test_inputs_of_the_wrong_shape_are_refused():
    net = Network([3, 1])
    with pytest.raises(ValueError, match=r"X must have shape \(3, m\)"):
        net.forward(np.zeros((4, 2)))


def test_one_hot_labels_sets_one_per_column_into_out_of_any_layout():
    expected = np.array([[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 1, 0]], dtype=np.float32)
    assert_array_equal(one_hot_labels(np.array([1, 0, 2, 1]), 3, np.float32), expected)
    out = batch_buffer(3, 4, np.dtype(np.float32))  # the training batches' layout
    out.fill(7)
    assert one_hot_labels(np.array([1, 0, 2, 1]), 3, np.float32, out=out) is out
    assert_array_equal(out, expected)
    assert one_hot_labels(np.array([], dtype=np.int64), 3, np.float64).shape == (3, 0)


@pytest.mark.parametrize(
    "labels, out_shape, reason",
    [
        (np.array([[1, 0]]), None, "shape"),
        (np.array([1.0, 0.0]), None, "integer"),
        (np.array([0, 3]), None, r"\[0, 3\)"),
        (np.array([-1, 0]), None, r"\[0, 3\)"),
        (np.array([0, 1]), (3, 5), "out must have shape"),
    ],
)
def test_one_hot_labels_refuses_what_is_not_class_indices_or_an_out_of_the_wrong_shape(
    labels, out_shape, reason
):
    out = None if out_shape is None else np.empty(out_shape, np.float32)
    with pytest.raises(ValueError, match=reason):
        one_hot_labels(labels, 3, np.float32, out=out)
