"""The fast engine's workspace and propagation (models/fast/): buffer layouts, the products taken
in one gemm, and the weight step inside its gradient's product."""

import numpy as np
import pytest

import models.fast.blas
from models import Network
from models.fast.blas import fused_available
from models.fast.propagation import propagate_backward, propagate_forward
from models.fast.workspace import Workspace


def test_batch_buffers_keep_their_shorter_side_contiguous():
    ws = Workspace([784, 256, 128, 10], 128, np.dtype(np.float32))
    assert ws.A[1].shape == (256, 128) and ws.A[1].flags.c_contiguous  # 256 units >= 128
    assert ws.A[2].flags.c_contiguous and ws.dZ[2].flags.c_contiguous  # 128 >= 128
    assert ws.dZ[3].shape == (10, 128) and not ws.dZ[3].flags.c_contiguous  # 10 units < 128
    wide = Workspace([12288, 20, 1], 209, np.dtype(np.float32))
    assert wide.A[1].flags.f_contiguous and not wide.A[1].flags.c_contiguous


def test_the_outputs_logits_and_probabilities_are_c_ordered_with_fewer_classes_than_examples():
    """For the softmax's reductions over each column's k classes (Workspace.__init__); a
    batch_buffer of 10 × 128 would be F-ordered."""
    ws = Workspace([784, 256, 128, 10], 128, np.dtype(np.float32))
    assert ws.Z_out.shape == ws.A_out.shape == (10, 128)
    assert ws.Z_out.flags.c_contiguous and ws.A_out.flags.c_contiguous


def test_back_propagation_can_take_the_descent_step_inside_the_weight_products():
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((6, 11)), rng.integers(0, 3, (1, 11))
    net = Network([6, 8, 5, 3], output="softmax", seed=3, dtype="float64")
    ws = Workspace(net.layer_dims, 11, net.dtype)
    propagate_forward(net, X, ws)
    grads = {
        k: g.copy() for k, g in propagate_backward(net, X, net.targets(Y), ws, scale=0.1).items()
    }
    expected = {f"W{n}": net.params[f"W{n}"] - grads[f"dW{n}"] for n in (1, 2, 3)}

    stepped = propagate_backward(net, X, net.targets(Y), ws, scale=0.1, descend_weights=True)

    for name, W in expected.items():
        np.testing.assert_allclose(net.params[name], W, rtol=1e-13, atol=1e-15)
    for n in (1, 2, 3):  # the biases' gradients come back as before, for their own step
        np.testing.assert_array_equal(stepped[f"db{n}"], grads[f"db{n}"])
    with pytest.raises(ValueError, match="without L2"):
        propagate_backward(net, X, net.targets(Y), ws, l2=0.1, descend_weights=True)


def test_a_workspace_prepares_each_weight_step_once_and_again_for_other_arrays():
    """Workspace.weight_step prepares W ← W - dZ A_prevᵀ at its first call and reuses it while
    the same three arrays come back (new values in place); another W or input is prepared anew,
    never stepped through the old one's address."""
    rng = np.random.default_rng(5)
    ws = Workspace([3, 4], 6, np.dtype(np.float64))
    W, X = rng.standard_normal((4, 3)), rng.standard_normal((3, 6))
    dZ = ws.dZ[1]
    for _ in range(2):  # new values in the same arrays
        dZ[...], X[...] = rng.standard_normal((4, 6)), rng.standard_normal((3, 6))
        expected = W - dZ @ X.T
        ws.weight_step(1, W, dZ, X)
        np.testing.assert_allclose(W, expected, rtol=1e-13, atol=1e-15)
    prepared = ws._products[("step", 1)]

    W_new, X_new = W.copy() + 1.0, X.copy() * 2.0  # e.g. net.params = ... between batches
    W_before, expected = W.copy(), W_new - dZ @ X_new.T
    ws.weight_step(1, W_new, dZ, X_new)

    np.testing.assert_allclose(W_new, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(W, W_before)  # the old W is left alone
    assert ws._products[("step", 1)] is not prepared


@pytest.mark.parametrize(
    ("n_x", "n", "m", "in_one_gemm"),
    [
        (3, 9, 6, False),  # a product for one thread: np.matmul, then + b
        (300, 40, 30, True),  # two threads' work (m·n·k > 65536 × 4): Z[1] C-ordered
        (600, 20, 30, True),  # the same, Z[1] F-ordered (20 units < 30 examples)
        (4000, 1, 80, False),  # one row: gemv's work, np.matmul
        (4000, 80, 1, False),  # one column (a single example): gemv's work too
    ],
)
def test_a_workspace_forward_product_is_w_a_plus_b_into_z(n_x, n, m, in_one_gemm):
    """Workspace.forward_product writes Z = W A_prev + b (b across the columns), reading new
    values at every call; a product taken in one gemm is prepared once and anew for another W."""
    rng = np.random.default_rng(6)
    ws = Workspace([n_x, n, 1], m, np.dtype(np.float64))
    Z = ws.Z(1)  # a hidden layer's batch_buffer (the output's own Z is always C-ordered)
    assert Z.flags.c_contiguous is (n >= m or n == 1)
    W, X, b = (rng.standard_normal(shape) for shape in [(n, n_x), (n_x, m), (n, 1)])
    prepared = []
    for _ in range(2):
        X[...], b[...] = rng.standard_normal((n_x, m)), rng.standard_normal((n, 1))
        Z[...] = np.nan  # whatever the buffer held before
        ws.forward_product(1, Z, W, X, b)
        np.testing.assert_allclose(Z, W @ X + b, rtol=1e-12, atol=1e-12)
        prepared.append(ws._products.get(("forward", 1)))
    assert (prepared[0] is not None) is in_one_gemm
    assert prepared[1] is prepared[0]  # prepared once (or never)
    if in_one_gemm and fused_available("float64"):  # the gemm itself, not the fallback
        assert prepared[0].product._call.func is models.fast.blas._gemm(np.dtype(np.float64))

    W_new = W + 1.0
    ws.forward_product(1, Z, W_new, X, b)

    np.testing.assert_allclose(Z, W_new @ X + b, rtol=1e-12, atol=1e-12)
    if in_one_gemm:
        assert ws._products[("forward", 1)] is not prepared[0]


def test_without_numpys_own_gemm_a_forward_product_is_a_matmul_and_an_add(monkeypatch):
    """The one-gemm route would only add a pass through add_product's fallback."""
    monkeypatch.setattr("models.fast.blas._gemm", lambda dtype: None)
    rng = np.random.default_rng(7)
    ws = Workspace([300, 40, 1], 30, np.dtype(np.float64))  # two threads' work, as above
    W, X, b = rng.standard_normal((40, 300)), rng.standard_normal((300, 30)), np.ones((40, 1))
    ws.forward_product(1, ws.Z(1), W, X, b)
    np.testing.assert_allclose(ws.Z(1), W @ X + b, rtol=1e-12, atol=1e-12)
    assert ("forward", 1) not in ws._products
