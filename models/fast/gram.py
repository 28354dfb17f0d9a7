"""Full-batch gradient descent on the first layer, in its Gram form.

Gradient descent on the whole training set X: (n_x, m), without L2, only ever adds to W[1]
combinations of the training examples, because every gradient of W[1] is one:
    dW[1] = dZ[1] Xᵀ      so after any number of steps      W[1] = W[1]₀ + C Xᵀ,   C: (n[1], m)
with the update W[1] ← W[1] - α dZ[1] Xᵀ becoming C ← C - α dZ[1]. The first layer's product,
which forward propagation needs every epoch, is then
    W[1] X = W[1]₀ X + C (Xᵀ X) = P₀ + C G,      P₀ = W[1]₀ X: (n[1], m),  G = Xᵀ X: (m, m)
with P₀ and G computed once. Nor is C G recomputed: each step moves W[1] X by -α dZ[1] G, the
product that also gives the gradient's norm, ‖dZ[1] Xᵀ‖² = Σ (dZ[1] G) ⊙ dZ[1]. An epoch costs
n[1]·m² multiply-adds for this layer instead of the 2·n[1]·n_x·m of its forward product and its
gradient: for the course's cat pictures (n_x = 12288, m = 209) that is 118× less, and those two
products were most of the epoch.

The numbers are those of the plain loop up to float rounding. G, P₀ and C are kept in float64
whatever the network's dtype: images are not centred, so P₀ + C G adds terms much larger than
their sum (~60× on pixel data), which in float32 lost about 7× the accuracy of the plain
product. The float64 work is small (n[1]·m² an epoch) and its copies are bounded (the inputs are
converted CHUNK columns at a time). W[1] itself is only formed when someone needs it (a
checkpoint, the end of training); checkpoints keep W[1]₀, C and W[1] X as well, so a resumed run
continues this same computation bit for bit.
"""

import math

import numpy as np

# Worth it when G is small next to the data: m ≤ n_x / 4, so G (float64) takes at most half the
# float32 data's memory; and when computing G (m²·n_x multiply-adds, as many as m / (2·n[1])
# plain epochs) costs at most 200 plain epochs, a tenth of train's default 2000 (the cat
# pictures' logistic regression: 105). The choice must not depend on the number of epochs
# asked for: a run of 40 epochs resumed to 100 has to take the same path as a run of 100.
MAX_M_OVER_N_X = 0.25
MAX_SETUP_EPOCHS = 200
STATE_KEYS = ("gram_W1_base", "gram_C")  # what resuming in this form needs ("gram_product" helps)
CHUNK = 512  # input columns converted to float64 at a time: m × CHUNK × 8 bytes


def gram_form_applies(m: int, n_x: int, n_1: int) -> bool:
    """Whether full-batch gradient descent without L2 on m examples of n_x inputs, with n_1
    first-layer units, runs its first layer in the Gram form."""
    return m <= MAX_M_OVER_N_X * n_x and m <= 2 * n_1 * MAX_SETUP_EPOCHS


class GramFirstLayer:
    """W[1] = W[1]₀ + C Xᵀ for the training inputs ``rows``: (m, n_x), one example per row.

    base: W[1]₀ (n[1], n_x) in the network's dtype; in float64: C (n[1], m), gram G = XᵀX (m, m)
    and base_product P₀ = W[1]₀ X (n[1], m).
    """

    def __init__(self, W1: np.ndarray, rows: np.ndarray, state: dict | None = None):
        self.rows = rows
        if state is None:
            self.base = W1.copy()
            self.C = np.zeros((W1.shape[0], rows.shape[0]))
        else:
            self.base = np.array(state["gram_W1_base"], dtype=W1.dtype)
            self.C = np.array(state["gram_C"], dtype=np.float64)
        self.gram, self.base_product = _gram_and_base_product(rows, self.base)
        self._base_norm2 = float(np.vdot(self.base, self.base))  # ‖W[1]₀‖², for weight_norm
        # W[1] X = P₀ + C G, moved by each step; a checkpoint carries it so that a resumed run
        # goes on with the same rounding (an older checkpoint without it: computed afresh).
        if state is not None and "gram_product" in state:
            self._product = np.array(state["gram_product"], dtype=np.float64)
        else:
            self._product = self.C @ self.gram
            self._product += self.base_product
        self._direction: np.ndarray | None = None  # dZ[1] G from gradient_norm, for step
        self._validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def product(self, out: np.ndarray) -> np.ndarray:
        """W[1] X: (n[1], m) into ``out`` (P₀ + C G, as the steps so far left it)."""
        np.copyto(out, self._product)
        return out

    def weight_norm(self) -> float:
        """‖W[1]‖ without forming W[1]:
        ‖W[1]₀ + C Xᵀ‖² = ‖W[1]₀‖² + 2 <C, P₀> + <C G, C> = ‖W[1]₀‖² + <C, P₀> + <C, W[1] X>,
        as C G = W[1] X - P₀. Two products of n[1]·m terms."""
        norm2 = self._base_norm2 + float(np.vdot(self.C, self.base_product))
        return math.sqrt(max(norm2 + float(np.vdot(self.C, self._product)), 0.0))

    def product_with(
        self, X_other: np.ndarray, out: np.ndarray, columns: slice = slice(None)
    ) -> np.ndarray:
        """W[1] X_other[:, columns]: (n[1], b) for other inputs (validation data) into ``out``,
        as W[1]₀ X_other + C (Xᵀ X_other); both factors are computed once per X_other."""
        if self._validation is None or self._validation[0] is not X_other:
            cross = _product64(self.rows, X_other)  # Xᵀ X_other: (m, m_other)
            self._validation = (X_other, _product64(self.base, X_other), cross)
        _, base_other, cross = self._validation
        product = self.C @ cross[:, columns]
        product += base_other[:, columns]
        np.copyto(out, product)
        return out

    def step(self, dZ1: np.ndarray, factor: float = 1.0) -> None:
        """Gradient descent's W[1] ← W[1] - factor · dZ[1] Xᵀ, as C ← C - factor · dZ[1] and
        W[1] X ← W[1] X - factor · dZ[1] G (dZ[1] G from the gradient_norm just taken of these
        same gradients, if it was)."""
        direction = self._direction
        if direction is None:
            direction = dZ1.astype(np.float64, copy=False) @ self.gram
        self._direction = None
        self.C -= dZ1 * factor if factor != 1.0 else dZ1
        direction *= factor
        self._product -= direction

    def gradient_norm(self, dZ1: np.ndarray) -> float:
        """‖dZ[1] Xᵀ‖ (Frobenius) from dZ[1]: (n[1], m), without forming the gradient:
        ‖dZ[1] Xᵀ‖² = <dZ[1] G, dZ[1]>. dZ[1] G is kept for the step on these gradients."""
        dZ1 = dZ1.astype(np.float64, copy=False)
        self._direction = dZ1 @ self.gram
        return math.sqrt(max(float(np.vdot(self._direction, dZ1)), 0.0))

    def is_finite(self) -> bool:
        return math.isfinite(float(self.C.sum()))

    def weights(self) -> np.ndarray:
        """W[1] = W[1]₀ + C Xᵀ: (n[1], n_x), in the network's dtype."""
        W1 = np.empty_like(self.base)
        for start in range(0, W1.shape[1], CHUNK):
            part = slice(start, start + CHUNK)
            W1[:, part] = self.base[:, part] + self.C @ self.rows[:, part].astype(np.float64)
        return W1

    def state(self) -> dict[str, np.ndarray]:
        return {"gram_W1_base": self.base, "gram_C": self.C, "gram_product": self._product}


def _gram_and_base_product(rows: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """G = XᵀX: (m, m) and P₀ = W[1]₀ X: (n[1], m) in float64, for rows = Xᵀ: (m, n_x) and
    base = W[1]₀: (n[1], n_x), in one pass over X: each CHUNK of its columns converted once
    for both (converting each operand apart took longer than the products)."""
    m, n_1 = rows.shape[0], base.shape[0]
    gram, base_product = np.zeros((m, m)), np.zeros((n_1, m))
    for start in range(0, rows.shape[1], CHUNK):
        part = slice(start, start + CHUNK)
        X_part = rows[:, part].astype(np.float64)  # (m, CHUNK)
        gram += X_part @ X_part.T
        base_product += base[:, part].astype(np.float64) @ X_part.T
    return gram, base_product


def _product64(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B in float64 for A: (p, k), B: (k, q), converting CHUNK of the k columns at a time
    (no float64 copy of a whole (·, n_x) operand)."""
    out = np.zeros((A.shape[0], B.shape[1]))
    for start in range(0, A.shape[1], CHUNK):
        part = slice(start, start + CHUNK)
        out += A[:, part].astype(np.float64) @ B[part].astype(np.float64)
    return out
