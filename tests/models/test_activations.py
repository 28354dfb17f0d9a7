"""Activations: worked values, derivatives against finite differences, the registry."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.activations import ACTIVATIONS, LEAKY_RELU_SLOPE, get_activation


def test_activations_match_hand_computed_values():
    Z = np.array([[-2.0, 0.0, 3.0]])
    e = np.e
    expected = {
        "sigmoid": [1 / (1 + e**2), 0.5, 1 / (1 + e**-3)],
        "tanh": [(e**-2 - e**2) / (e**-2 + e**2), 0.0, (e**3 - e**-3) / (e**3 + e**-3)],
        "relu": [0.0, 0.0, 3.0],
        "leaky_relu": [-2.0 * LEAKY_RELU_SLOPE, 0.0, 3.0],
    }
    for name, values in expected.items():
        A = ACTIVATIONS[name].forward(Z, np.empty_like(Z))
        np.testing.assert_allclose(A[0], values, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_backward_matches_finite_differences_of_forward(name):
    rng = np.random.default_rng(7)
    Z = rng.standard_normal((4, 6)) * 3
    Z[np.abs(Z) < 1e-3] = 0.5  # keep away from relu's kink, where no derivative exists
    activation = ACTIVATIONS[name]
    eps = 1e-6
    numeric = (activation.forward(Z + eps, None) - activation.forward(Z - eps, None)) / (2 * eps)
    dA = rng.standard_normal(Z.shape)
    A = activation.forward(Z, None)
    dZ = activation.backward(dA.copy(), A)
    np.testing.assert_allclose(dZ, dA * numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_forward_in_place_equals_forward_into_new_array(name):
    Z = np.linspace(-5, 5, 12).reshape(3, 4)
    expected = ACTIVATIONS[name].forward(Z, None)
    in_place = Z.copy()
    ACTIVATIONS[name].forward(in_place, in_place)
    np.testing.assert_array_equal(in_place, expected)


@given(
    arrays(np.float32, (3, 5), elements=st.floats(allow_nan=False, allow_infinity=False, width=32))
)
@settings(max_examples=50, deadline=None)
def test_sigmoid_stays_finite_and_in_range_for_any_float32_input(Z):
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is harmless
        A = ACTIVATIONS["sigmoid"].forward(Z, None)
    assert A.dtype == np.float32
    assert np.all((A >= 0) & (A <= 1))


def test_unknown_activation_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown activation 'swish'; known: leaky_relu, relu"):
        get_activation("swish")
