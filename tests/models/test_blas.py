"""models/fast/blas.py: C += α A B in one gemm call of NumPy's own OpenBLAS, and its fallback."""

import numpy as np
import pytest
import threadpoolctl

import models.fast.blas as blas
from models.fast.blas import AddProduct, add_product, fused_available


def operand(rng, shape, dtype, order):
    """A (rows, cols) array stored C-ordered, F-ordered (a transposed view) or with a gap
    between rows (a column slice of a wider array)."""
    rows, cols = shape
    if order == "C":
        return rng.standard_normal(shape).astype(dtype)
    if order == "F":
        return rng.standard_normal((cols, rows)).astype(dtype).T
    return rng.standard_normal((rows, cols + 3)).astype(dtype)[:, 1 : cols + 1]


@pytest.fixture(params=["fused", "fallback"])
def path(request, monkeypatch):
    if request.param == "fallback":
        monkeypatch.setattr(blas, "_gemm", lambda dtype: None)
    return request.param


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("order_a", ["C", "F", "gap"])
@pytest.mark.parametrize("order_b", ["C", "F", "gap"])
@pytest.mark.parametrize("order_c", ["C", "F", "gap"])
def test_add_product_adds_alpha_times_the_product_in_place(path, dtype, order_a, order_b, order_c):
    rng = np.random.default_rng(0)
    C = operand(rng, (5, 7), dtype, order_c)
    A, B = operand(rng, (5, 3), dtype, order_a), operand(rng, (3, 7), dtype, order_b)
    expected = C.astype(np.float64) - 0.5 * (A.astype(np.float64) @ B.astype(np.float64))
    C_before = C

    add_product(C, A, B, -0.5, scratch=np.empty_like(C) if order_c == "C" else None)

    assert C is C_before
    tolerance = 1e-5 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(C, expected, rtol=tolerance, atol=tolerance)


def test_a_prepared_product_reads_its_arrays_anew_at_every_call(path):
    """AddProduct takes the arrays' places once; each call multiplies what they hold then."""
    rng = np.random.default_rng(2)
    C = rng.standard_normal((5, 7))
    A, B = operand(rng, (5, 3), "float64", "F"), operand(rng, (3, 7), "float64", "gap")
    step = AddProduct(C, A, B, -1.0, scratch=np.empty_like(C))

    for _ in range(3):
        A[...], B[...] = rng.standard_normal(A.shape), rng.standard_normal(B.shape)
        expected = C - A @ B
        step()
        np.testing.assert_allclose(C, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("order_c", ["C", "F"])
def test_a_contiguous_output_in_either_order_takes_the_one_gemm_call(order_c):
    """An F-ordered C (a transposed view) is multiplied as Cᵀ += α Bᵀ Aᵀ, not by the fallback."""
    if not fused_available("float32"):
        pytest.skip("NumPy's own OpenBLAS is not reachable here: add_product always falls back")
    rng = np.random.default_rng(3)
    C = operand(rng, (5, 7), "float32", order_c)
    A, B = operand(rng, (5, 3), "float32", "C"), operand(rng, (3, 7), "float32", "F")

    step = AddProduct(C, A, B, 1.0)

    assert step._call.func is blas._gemm(np.dtype(np.float32))


def test_an_array_without_a_contiguous_axis_falls_back_to_the_same_result():
    rng = np.random.default_rng(1)
    C = rng.standard_normal((4, 6))
    A = rng.standard_normal((8, 10))[::2, ::2]  # (4, 5): neither axis contiguous
    B = rng.standard_normal((5, 6))
    expected = C + 2.0 * (A @ B)

    add_product(C, A, B, 2.0, scratch=np.empty_like(C))

    np.testing.assert_allclose(C, expected, rtol=1e-13)


def test_numpys_own_openblas_is_reached_without_loading_another_blas():
    config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    if config.get("name") != "scipy-openblas":
        pytest.skip(f"NumPy is built against {config.get('name')}: add_product falls back")
    blas._gemm.cache_clear()  # look the library up again, whatever ran before
    blas._numpy_openblas.cache_clear()
    before = [lib["filepath"] for lib in threadpoolctl.threadpool_info()]
    assert fused_available("float32") and fused_available("float64")
    assert [lib["filepath"] for lib in threadpoolctl.threadpool_info()] == before
