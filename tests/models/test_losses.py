"""Output/loss pairs: worked costs, stability, gradients w.r.t. the logits, L2."""

import math

import numpy as np
import pytest

from models.losses import (
    OUTPUTS,
    binary_cross_entropy,
    categorical_cross_entropy,
    get_output,
    l2_cost,
    softmax,
)


def test_binary_cross_entropy_matches_the_course_formula():
    Z = np.array([[0.5, -1.0, 2.0]])
    Y = np.array([[1.0, 0.0, 0.0]])
    a = [1 / (1 + math.exp(-z)) for z in (0.5, -1.0, 2.0)]
    expected = -(math.log(a[0]) + math.log(1 - a[1]) + math.log(1 - a[2])) / 3
    assert binary_cross_entropy(Z, Y) == pytest.approx(expected, rel=1e-14)


def test_binary_cross_entropy_of_zero_logits_is_ln_2_exactly():
    Z = np.zeros((1, 7))
    Y = np.array([[1, 0, 1, 1, 0, 0, 1]], dtype=float)
    assert binary_cross_entropy(Z, Y) == pytest.approx(math.log(2), abs=1e-15)


def test_categorical_cross_entropy_matches_hand_computed_value():
    Z = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])  # two examples, three classes
    Y = np.array([[0, 1], [0, 0], [1, 0]], dtype=float)
    p_first = math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3))
    p_second = 1 / 3
    expected = -(math.log(p_first) + math.log(p_second)) / 2
    assert categorical_cross_entropy(Z, Y) == pytest.approx(expected, rel=1e-14)


def test_costs_stay_finite_for_huge_logits():
    Z = np.array([[1e4, -1e4]], dtype=np.float32)
    Y = np.array([[0.0, 1.0]], dtype=np.float32)
    assert binary_cross_entropy(Z, Y) == pytest.approx(1e4, rel=1e-6)
    Zk = np.array([[1e4], [-1e4]], dtype=np.float32)
    assert categorical_cross_entropy(Zk, np.array([[0.0], [1.0]])) == pytest.approx(2e4, rel=1e-6)


def test_softmax_columns_sum_to_one_and_survive_large_logits():
    Z = np.array([[1000.0, 1.0], [1001.0, 2.0]])
    A = softmax(Z)
    np.testing.assert_allclose(A.sum(axis=0), [1.0, 1.0])
    np.testing.assert_allclose(A[:, 0], [1 / (1 + math.e), math.e / (1 + math.e)])


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_output_gradient_matches_finite_differences_of_the_cost(name):
    rng = np.random.default_rng(3)
    output = OUTPUTS[name]
    k, m = (1, 5) if name == "sigmoid" else (4, 5)
    Z = rng.standard_normal((k, m))
    if name == "sigmoid":
        Y = rng.integers(0, 2, (1, m)).astype(float)
    else:
        Y = np.eye(k)[:, rng.integers(0, k, m)]
    dZ = output.gradient(output.activate(Z, None), Y)
    eps = 1e-6
    numeric = np.zeros_like(Z)
    for index in np.ndindex(Z.shape):
        plus, minus = Z.copy(), Z.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (output.cost(plus, Y) - output.cost(minus, Y)) / (2 * eps)
    np.testing.assert_allclose(dZ, numeric, rtol=1e-6, atol=1e-10)


def test_l2_cost_sums_squared_weights_but_not_biases():
    params = {"W1": np.array([[1.0, 2.0]]), "b1": np.array([[100.0]]), "W2": np.array([[3.0]])}
    assert l2_cost(params, l2=0.5, m=4) == pytest.approx(0.5 / 8 * (1 + 4 + 9))
    assert l2_cost(params, l2=0.0, m=4) == 0.0


def test_unknown_output_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown output 'linear'; known: sigmoid, softmax"):
        get_output("linear")


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_activation_with_cost_equals_activation_and_cost_apart(name):
    rng = np.random.default_rng(5)
    output = OUTPUTS[name]
    k = 1 if name == "sigmoid" else 6
    Z = rng.standard_normal((k, 9)) * 20
    Y = rng.integers(0, 2, (1, 9)).astype(float) if k == 1 else np.eye(k)[:, rng.integers(0, k, 9)]
    A, cost = output.activate_with_cost(Z, Y, np.empty_like(Z))
    np.testing.assert_allclose(A, output.activate(Z, None), rtol=1e-14)
    assert cost == pytest.approx(output.cost(Z, Y), rel=1e-13)
