"""C ← C + α A B in one BLAS call: a weight gradient's product and gradient descent's update
fused, as gemm is built to do (gemm computes C ← α A B + β C). models/fast/workspace.py also
takes its bigger forward products this way, onto Z filled with b.

``np.matmul(dZ, A.T, out=dW)`` calls gemm with β = 0, which first zeroes dW; ``W -= dW`` then
reads dW back: three passes over each weight matrix per batch that ``W ← W - dZ Aᵀ`` (β = 1)
does not make: an MLP epoch runs faster fused (docs/benchmarks.md, 'Measured by hand').

NumPy does not expose β, so ``add_product`` calls gemm from the OpenBLAS bundled in NumPy's
wheels through ctypes: the library ``np.matmul`` itself calls, already loaded, with its thread
pool. Where that library is not found (a NumPy built against another BLAS), or an array's
layout is not one gemm takes, it falls back to ``np.matmul`` into a scratch array and an add.
"""

import ctypes
import functools
from pathlib import Path

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS's enum values

# OpenBLAS runs gemm on one thread up to m·n·k = 65536 × 4 multiply-adds, and splits bigger
# ones over its threads (interface/gemm.c: SMP_THRESHOLD_MIN × GEMM_MULTITHREAD_THRESHOLD).
ONE_THREAD_GEMM_WORK = 65536 * 4


def add_product(C: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float, scratch=None):
    """C += alpha · A @ B in place, for C: (M, N), A: (M, K), B: (K, N), one dtype.

    scratch: an (M, N) array the fallback may overwrite with A @ B (else it allocates one).
    """
    AddProduct(C, A, B, alpha, scratch)()


class AddProduct:
    """``add_product(C, A, B, alpha, scratch)`` made ready to call again and again:
    ``step = AddProduct(...)``, then ``step()`` for each batch while the arrays keep their
    places (their values change in place).

    The checks, layouts and data pointers are worked out once, not at each of the three calls
    a batch makes (docs/benchmarks.md, 'Measured by hand').
    ``operands`` holds C, A and B: alive as long as the call that points into them.
    """

    def __init__(self, C, A, B, alpha: float, scratch: np.ndarray | None = None):
        self.operands = C, A, B
        if C.flags.f_contiguous and not C.flags.c_contiguous:
            C, A, B = C.T, B.T, A.T  # Cᵀ += α Bᵀ Aᵀ: the same sums, with a C-ordered output
            scratch = None if scratch is None else scratch.T
        gemm = _gemm(C.dtype)
        layouts = _layout(A), _layout(B)
        fused = (
            gemm is not None
            and C.flags.c_contiguous
            and A.dtype == B.dtype == C.dtype
            and None not in layouts
            and not np.may_share_memory(C, A)
            and not np.may_share_memory(C, B)
        )
        if not fused:
            scratch = np.empty_like(C) if scratch is None else scratch
            self._call = functools.partial(_add_by_matmul, C, A, B, alpha, scratch)
            return
        (M, N), K = C.shape, A.shape[1]
        (trans_a, ld_a), (trans_b, ld_b) = layouts
        enum, i64, pointer = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
        real = ctypes.c_float if C.dtype == np.float32 else ctypes.c_double
        # Each argument as a ctypes object of cblas_?gemm's own type, made once: gemm has no
        # argtypes, so ctypes passes them as they are instead of converting 14 Python numbers
        # at every call.
        self._call = functools.partial(
            gemm, enum(_ROW_MAJOR), enum(trans_a), enum(trans_b), i64(M), i64(N), i64(K),
            real(alpha), pointer(A.ctypes.data), i64(ld_a), pointer(B.ctypes.data), i64(ld_b),
            real(1.0), pointer(C.ctypes.data), i64(N),
        )  # fmt: skip

    def __call__(self) -> None:
        self._call()


def _add_by_matmul(C, A, B, alpha: float, scratch: np.ndarray) -> None:
    np.matmul(A, B, out=scratch)
    if alpha != 1.0:
        scratch *= alpha
    C += scratch


def fused_available(dtype=np.float32) -> bool:
    """Whether add_product reaches NumPy's own gemm for ``dtype`` (else it falls back)."""
    return _gemm(np.dtype(dtype)) is not None


def _layout(a: np.ndarray) -> tuple[int, int] | None:
    """(transpose flag, leading dimension) of a 2-D array for row-major gemm, or None when
    neither axis is contiguous."""
    size = a.itemsize
    rows, cols = a.shape
    if a.strides[1] == size and a.strides[0] % size == 0 and a.strides[0] >= size * cols:
        return _NO_TRANS, a.strides[0] // size
    if a.strides[0] == size and a.strides[1] % size == 0 and a.strides[1] >= size * rows:
        return _TRANS, a.strides[1] // size  # a is the transpose of a row-major array
    return None


@functools.cache
def _gemm(dtype: np.dtype):
    """cblas_{s,d}gemm of the OpenBLAS in NumPy's wheels (64-bit integers), or None.

    Called with ctypes objects only (AddProduct): (enum order, enum trans_a, enum trans_b,
    int64 M, N, K, real alpha, void* A, int64 lda, void* B, int64 ldb, real beta, void* C,
    int64 ldc), real being float or double as the dtype.
    """
    if dtype not in (np.float32, np.float64):
        return None
    library = _numpy_openblas()
    name = f"scipy_cblas_{'s' if dtype == np.float32 else 'd'}gemm64_"
    if library is None or not hasattr(library, name):
        return None
    gemm = library[name]  # a function object of our own: no argtypes, whoever else uses it
    gemm.restype = None
    return gemm


@functools.cache
def _numpy_openblas() -> ctypes.CDLL | None:
    """The scipy-openblas library NumPy was built with and has loaded (numpy.libs/ on Linux
    and Windows, numpy/.dylibs/ on macOS), or None."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (KeyError, TypeError, ValueError):
        return None
    if blas.get("name") != "scipy-openblas" or "USE64BITINT" not in blas.get(
        "openblas configuration", ""
    ):
        return None
    package = Path(np.__file__).resolve().parent
    for folder in (package.parent / "numpy.libs", package / ".dylibs"):
        for path in sorted(folder.glob("libscipy_openblas64_*")):
            try:
                return ctypes.CDLL(str(path))  # already loaded: dlopen hands back that copy
            except OSError:
                continue
    return None
