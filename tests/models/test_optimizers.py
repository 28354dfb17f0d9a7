"""Update rules: one step of each worked by hand, state round trips, the decay schedule."""

import math

import numpy as np
import pytest

from models.optimizers import Adam, GradientDescent, Momentum, decayed_learning_rate, make_optimizer


def one_param():
    return {"W1": np.array([[1.0, -2.0]])}, {"dW1": np.array([[0.5, -4.0]])}


def test_gradient_descent_step_subtracts_learning_rate_times_gradient():
    params, grads = one_param()
    GradientDescent(params).step(params, grads, 0.1)
    np.testing.assert_allclose(params["W1"], [[1.0 - 0.05, -2.0 + 0.4]])


def test_momentum_two_steps_match_hand_computation():
    params, grads = one_param()
    opt = Momentum(params, beta=0.9)
    opt.step(params, {"dW1": grads["dW1"].copy()}, 0.1)
    v1 = 0.1 * np.array([0.5, -4.0])  # v = 0.9·0 + 0.1·g
    np.testing.assert_allclose(params["W1"][0], [1.0, -2.0] - 0.1 * v1)
    opt.step(params, {"dW1": grads["dW1"].copy()}, 0.1)
    v2 = 0.9 * v1 + 0.1 * np.array([0.5, -4.0])
    np.testing.assert_allclose(params["W1"][0], [1.0, -2.0] - 0.1 * v1 - 0.1 * v2)


def test_adam_first_step_moves_each_weight_by_about_the_learning_rate():
    params, grads = one_param()
    Adam(params).step(params, grads, 0.01)
    # m̂ = g, v̂ = g², so the step is α g / (|g| + ε) = α·sign(g)
    step = [0.01 * 0.5 / (0.5 + 1e-8), 0.01 * -4.0 / (4.0 + 1e-8)]
    np.testing.assert_allclose(params["W1"][0], [1.0 - step[0], -2.0 - step[1]], rtol=1e-15)


def test_adam_second_step_uses_bias_corrected_moments():
    params, _ = one_param()
    opt = Adam(params, beta1=0.9, beta2=0.999, epsilon=1e-8)
    g1, g2 = np.array([[0.5, -4.0]]), np.array([[1.0, 2.0]])
    opt.step(params, {"dW1": g1.copy()}, 0.01)
    after_one = params["W1"].copy()
    opt.step(params, {"dW1": g2.copy()}, 0.01)
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.999 * 0.001 * g1**2 + 0.001 * g2**2
    m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    np.testing.assert_allclose(params["W1"], after_one - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8))


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_optimizer_state_round_trip_continues_identically(name):
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((3, 2))}
    grads = [rng.standard_normal((3, 2)) for _ in range(4)]
    a = make_optimizer(name, params)
    for g in grads[:2]:
        a.step(params, {"dW1": g.copy()}, 0.01)
    copy = {"W1": params["W1"].copy()}
    b = make_optimizer(name, copy)
    b.load_state({k: np.copy(v) for k, v in a.state().items()})
    for g in grads[2:]:
        a.step(params, {"dW1": g.copy()}, 0.01)
        b.step(copy, {"dW1": g.copy()}, 0.01)
    np.testing.assert_array_equal(params["W1"], copy["W1"])


def test_learning_rate_decay_follows_the_schedule():
    assert decayed_learning_rate(0.1, 0) == 0.1
    assert decayed_learning_rate(0.1, 7) == 0.1  # no decay by default
    assert decayed_learning_rate(0.1, 3, decay_rate=1.0) == pytest.approx(0.1 / 4)
    assert decayed_learning_rate(0.1, 2500, decay_rate=0.3, decay_every=1000) == pytest.approx(
        0.1 / 1.6
    )
    assert math.isclose(decayed_learning_rate(0.1, 999, decay_rate=0.3, decay_every=1000), 0.1)


def test_unknown_optimizer_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; known: adam, gd, momentum"):
        make_optimizer("rmsprop", {})
