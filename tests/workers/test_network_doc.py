"""network.md: the run's equations with its real shapes."""

# ruff: noqa: RUF001 (the course's α and σ are meant)

from contract.spec import JobSpec
from models import Network
from workers.network_doc import render


def spec(**changes) -> JobSpec:
    return JobSpec.model_validate({"dataset": {"name": "digits"}, **changes})


def test_logistic_regression_doc_has_the_real_shapes_and_the_binary_cost():
    net = Network([625, 1], output="sigmoid", init="zeros")

    doc = render(net, spec(), ("non-face", "face"), m_train=150)

    assert "Z[1] = W[1] A[0] + b[1]" in doc
    assert "`W[1]: (1, 625)`, `b[1]: (1, 1)`" in doc
    assert "J = -1/m Σ [y log a + (1-y) log(1-a)]" in doc
    assert "the probability of `face`" in doc
    assert "626 parameters" in doc
    assert "λ" not in doc  # no L2 term without l2
    assert "θ := θ - α dθ" in doc


def test_mlp_doc_has_every_layer_its_activation_the_categorical_cost_l2_and_adam():
    net = Network([64, 16, 10], hidden_activation="tanh", output="softmax", seed=1)
    job = spec(
        model={"hidden_layers": [16], "hidden_activation": "tanh"},
        training={"optimizer": "adam", "l2": 0.1, "batch_size": 32},
    )

    doc = render(net, job, tuple(str(d) for d in range(10)), m_train=1348)

    assert "`W[1]: (16, 64)`, `b[1]: (16, 1)`, `A[1]: (16, m)`" in doc
    assert "`W[2]: (10, 16)`, `b[2]: (10, 1)`, `A[2]: (10, m)`" in doc
    assert "A[1] = tanh(Z[1])" in doc and "A[2] = softmax(Z[2])" in doc
    assert "J = -1/m Σ_examples Σ_k y_k log a_k + λ/(2m) Σ_l ||W[l]||²   (λ = 0.1)" in doc
    assert f"{16 * 64 + 16 + 10 * 16 + 10:,} parameters" in doc
    assert "m̂ = m / (1 - β₁ᵗ)" in doc and "batches of 32" in doc
