"""Back propagation against finite differences: every activation, every loss, L2, several
depths, and Hypothesis over shapes and seeds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import ACTIVATIONS, Network, gradient_check

TOLERANCE = 1e-7


def data(n_x, m, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_x, m))
    Y = rng.integers(0, 2 if k == 1 else k, (1, m))
    return X, Y


# Every activation at depths 1 to 3; without hidden layers the activation plays no part.
DEPTHS = [([], "relu")] + [
    (hidden, activation) for hidden in ([5], [6, 4], [5, 4, 3]) for activation in ACTIVATIONS
]


@pytest.mark.parametrize(("hidden", "activation"), DEPTHS)
@pytest.mark.parametrize(("output", "k"), [("sigmoid", 1), ("softmax", 4)])
@pytest.mark.parametrize("l2", [0.0, 0.7])
def test_backprop_matches_finite_differences(activation, output, k, hidden, l2):
    net = Network(
        [3, *hidden, k],
        hidden_activation=activation,
        output=output,
        init="xavier",
        seed=11,
        dtype="float64",
    )
    X, Y = data(3, 8, k, seed=1)
    assert gradient_check(net, X, Y, l2=l2) < TOLERANCE


@given(
    n_x=st.integers(1, 6),
    hidden=st.lists(st.integers(1, 6), max_size=3),
    k=st.sampled_from([1, 2, 5]),
    m=st.integers(1, 10),
    seed=st.integers(0, 2**16),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
)
@settings(max_examples=60, deadline=None)
def test_backprop_matches_finite_differences_for_any_shape_and_seed(
    n_x, hidden, k, m, seed, activation
):
    output = "sigmoid" if k == 1 else "softmax"
    net = Network(
        [n_x, *hidden, k],
        hidden_activation=activation,
        output=output,
        init="xavier",
        seed=seed,
        dtype="float64",
    )
    # Non-zero biases: behind a dead ReLU unit a zero bias puts the next Z exactly on the
    # kink at 0, where no derivative exists and finite differences disagree with any choice.
    rng = np.random.default_rng(seed)
    net.params = {
        name: p + rng.standard_normal(p.shape) * 0.1 if name.startswith("b") else p
        for name, p in net.params.items()
    }
    X, Y = data(n_x, m, k, seed)
    assert gradient_check(net, X, Y, l2=0.1) < TOLERANCE


def test_gradient_check_runs_in_float64_for_a_float32_network():
    net = Network([4, 3, 1], init="he", seed=1, dtype="float32")
    X, Y = data(4, 6, 1, seed=2)
    assert gradient_check(net, X, Y) < TOLERANCE
    assert net.dtype == np.float32  # the check worked on a copy


class BrokenNetwork(Network):
    """Back propagation with a bug: dW1 is 10% too large."""

    def gradients(self, X, Y, l2=0.0):
        grads = super().gradients(X, Y, l2)
        grads["dW1"] *= 1.1
        return grads

    def astype(self, dtype):
        copy = super().astype(dtype)
        copy.__class__ = BrokenNetwork
        return copy


def test_gradient_check_catches_a_wrong_gradient():
    net = BrokenNetwork([4, 3, 1], init="he", seed=1, dtype="float64")
    X, Y = data(4, 6, 1, seed=2)
    assert gradient_check(net, X, Y) > 1e-3


def test_gradient_check_can_sample_entries_of_a_big_network():
    net = Network([300, 20, 1], init="he", seed=0)
    X, Y = data(300, 4, 1, seed=0)
    assert gradient_check(net, X, Y, max_per_parameter=10) < TOLERANCE


class Counter:
    """A should_stop that counts its calls (one per entry checked) and says stop at ``stop``."""

    def __init__(self, stop: int | None = None):
        self.calls, self.stop = 0, stop

    def __call__(self) -> bool:
        self.calls += 1
        return self.stop is not None and self.calls > self.stop


def test_max_entries_bounds_the_entries_checked_in_all_whatever_the_depth():
    net = Network([10, *[30] * 12, 3], output="softmax", init="he", seed=0)
    X, Y = data(10, 4, 3, seed=0)
    counted = Counter()

    difference = gradient_check(
        net, X, Y, max_per_parameter=20, max_entries=50, should_stop=counted
    )

    assert counted.calls == 50  # not 20 for each of the 26 parameters
    assert difference < TOLERANCE


def test_the_entry_budget_is_shared_out_over_every_parameter():
    from models.gradcheck import entries_per_parameter

    sizes = {"W1": 1000, "b1": 10, "W2": 2, "b2": 1}
    counts = entries_per_parameter(sizes, max_per_parameter=20, max_entries=12)

    assert sum(counts.values()) == 12
    assert all(counts[name] >= 1 for name in sizes)
    assert counts["W2"] == 2 and counts["b2"] == 1  # all a small one has
    assert entries_per_parameter(sizes, None, None) == sizes


def test_a_stop_request_ends_the_check_between_two_entries():
    from models import GradientCheckStopped

    net = Network([50, 40, 1], init="he", seed=0)
    X, Y = data(50, 4, 1, seed=0)
    counted = Counter(stop=7)

    with pytest.raises(GradientCheckStopped) as stopped:
        gradient_check(net, X, Y, should_stop=counted)

    assert stopped.value.checked == 7
    assert counted.calls == 8
