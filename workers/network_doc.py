"""network.md: a run's equations written out with its real shapes, for the MLflow run page."""

# The equations are written in the course's notation: σ, α, β are meant.
# ruff: noqa: RUF001

from contract.spec import JobSpec
from models import Network

ACTIVATION_FORMULAS = {
    "relu": "relu(z) = max(0, z)",
    "leaky_relu": "leaky_relu(z) = max(0.01 z, z)",
    "tanh": "tanh(z) = (e^z - e^-z) / (e^z + e^-z)",
    "sigmoid": "σ(z) = 1 / (1 + e^-z)",
}

UPDATE_RULES = {
    "gd": "θ := θ - α dθ  (one update per epoch, on the whole training set)",
    "sgd": "θ := θ - α dθ  (one update per mini-batch)",
    "momentum": "v := β v + (1 - β) dθ;  θ := θ - α v  (β = 0.9)",
    "adam": (
        "m := β₁ m + (1 - β₁) dθ;  v := β₂ v + (1 - β₂) dθ²;  "
        "θ := θ - α m̂ / (√v̂ + ε), with m̂ = m / (1 - β₁ᵗ), v̂ = v / (1 - β₂ᵗ)  "
        "(β₁ = 0.9, β₂ = 0.999, ε = 1e-8)"
    ),
}


def render(net: Network, spec: JobSpec, classes: tuple[str, ...], m_train: int) -> str:
    """The Markdown of network.md for ``net`` trained as ``spec`` on ``m_train`` examples."""
    L, dims = net.num_layers, net.layer_dims
    title = spec.name or spec.experiment
    lines = [
        f"# {title}",
        "",
        f"Dataset `{spec.dataset.name}`: {dims[0]} features, {len(classes)} classes "
        f"({', '.join(classes)}), m = {m_train} training examples, one per column.",
        f"{L} layer{'s' if L > 1 else ''} with weights, {net.num_parameters:,} parameters, "
        f"{net.dtype.name}, initialized `{net.init}`.",
        "",
        "## Forward propagation",
        "",
        f"`A[0] = X`, X: ({dims[0]}, m)",
        "",
        "| layer | computes | shapes |",
        "|---|---|---|",
    ]
    for layer in range(1, L + 1):
        g = net.hidden_activation.name if layer < L else net.output.name
        lines.append(
            f"| {layer} | `Z[{layer}] = W[{layer}] A[{layer - 1}] + b[{layer}]`, "
            f"`A[{layer}] = {g}(Z[{layer}])` "
            f"| `W[{layer}]: ({dims[layer]}, {dims[layer - 1]})`, "
            f"`b[{layer}]: ({dims[layer]}, 1)`, `A[{layer}]: ({dims[layer]}, m)` |"
        )
    lines += ["", _activations(net), "", *_cost(net, spec.training.l2, classes), ""]
    lines += [*_optimizer(spec), ""]
    return "\n".join(lines)


def _activations(net: Network) -> str:
    if net.num_layers == 1:
        return "No hidden layer: this is logistic (or softmax) regression."
    name = net.hidden_activation.name
    return f"Hidden activation: {ACTIVATION_FORMULAS[name]}."


def _cost(net: Network, l2: float, classes: tuple[str, ...]) -> list[str]:
    L = net.num_layers
    if net.output.name == "sigmoid":
        output = (
            f"Output: a = σ(Z[{L}]) = P(y = 1 | x), the probability of `{classes[-1]}`; "
            "predicted class 1 when a > 0.5."
        )
        cost = "J = -1/m Σ [y log a + (1-y) log(1-a)]"
    else:
        output = (
            f"Output: softmax over {net.layer_dims[-1]} classes, "
            f"a_k = e^(z_k) / Σ_j e^(z_j); predicted class argmax_k a_k."
        )
        cost = "J = -1/m Σ_examples Σ_k y_k log a_k"
    if l2 > 0:
        cost += f" + λ/(2m) Σ_l ||W[l]||²   (λ = {l2:g})"
    return [
        "## Cost",
        "",
        output,
        "",
        "```",
        cost,
        f"dZ[{L}] = (A[{L}] - Y) / m",
        "dW[l] = dZ[l] A[l-1]ᵀ" + (" + λ/m W[l]" if l2 > 0 else "") + ",  db[l] = Σ dZ[l]",
        "dZ[l-1] = W[l]ᵀ dZ[l] * g'(Z[l-1])",
        "```",
    ]


def _optimizer(spec: JobSpec) -> list[str]:
    training = spec.training
    batch = "full batch" if training.batch_size is None else f"batches of {training.batch_size}"
    lines = [
        "## Optimizer",
        "",
        f"`{training.optimizer}`, α = {training.learning_rate:g}, {training.epochs} epochs, "
        f"{batch}, seed {training.seed}.",
        "",
        "```",
        UPDATE_RULES[training.optimizer],
        "```",
    ]
    if training.decay_rate > 0:
        lines.append(
            f"Learning-rate decay: α_e = α / (1 + {training.decay_rate:g} ⌊e / "
            f"{training.decay_every}⌋)."
        )
    return lines
