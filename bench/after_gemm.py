"""How fast Python and NumPy run right after a matrix product, by OpenBLAS kernel.

``.venv/bin/python bench/after_gemm.py`` times two loops: 3000 Python additions, and 30 ReLUs
of a 256 × 128 float32 array (np.maximum against zeros, as models/activations.py). Each runs
300 times in each of three phases: alone; each time right after the MLP's first-layer product
(256 × 784 × 128, float32, np.matmul); each time right after a memmove of as many bytes as
that product touches (caches disturbed as much, no arithmetic). The phases rest 0.2 s before
they start (OpenBLAS's threads asleep again), and the whole sequence repeats 3 times. It runs
once with OpenBLAS's own choice of kernels and once with ``OPENBLAS_CORETYPE=Haswell`` (AVX2
only), each in a process of its own, and prints the medians as a markdown table.

Why: in a training epoch the steps between products (activations, softmax, the batch's gather)
cost several times what they cost in a loop of their own (docs/benchmarks.md). A loop slower
right after the AVX-512 product but not after the memmove, nor after the AVX2 product, is
slowed by the AVX-512 arithmetic itself (the core's clock or state), not by refilled caches.
"""

import ctypes
import os
import statistics
import subprocess
import sys
import time

import numpy as np

REPEATS, ROUNDS, REST_SECONDS = 300, 3, 0.2
KERNELS = {"OpenBLAS's choice": None, "Haswell (AVX2)": "Haswell"}
PHASES = ("alone", "after the product", "after the memmove")


def measure() -> list[float]:
    """Median µs of each loop in each phase, loop by loop (run in this process)."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((256, 784), dtype=np.float32)
    X = rng.standard_normal((784, 128), dtype=np.float32)
    Z = np.empty((256, 128), np.float32)
    source = np.concatenate([W.ravel(), X.ravel(), Z.ravel()])
    target = np.empty_like(source)
    relu_in = rng.standard_normal((256, 128), dtype=np.float32)
    zeros, relu_out = np.zeros_like(relu_in), np.empty_like(relu_in)

    def python_loop() -> float:
        start = time.perf_counter()
        total = 0
        for i in range(3000):
            total += i
        return time.perf_counter() - start

    def relu_loop() -> float:
        start = time.perf_counter()
        for _ in range(30):
            np.maximum(relu_in, zeros, out=relu_out)
        return time.perf_counter() - start

    before = {
        "alone": lambda: None,
        "after the product": lambda: np.matmul(W, X, out=Z),
        "after the memmove": lambda: ctypes.memmove(
            target.ctypes.data, source.ctypes.data, source.nbytes
        ),
    }
    np.matmul(W, X, out=Z)  # start the thread pool
    times = {(loop, phase): [] for loop in ("python", "relu") for phase in PHASES}
    for _ in range(ROUNDS):
        for (loop, phase), seconds in times.items():
            timed, first = (python_loop if loop == "python" else relu_loop), before[phase]
            time.sleep(REST_SECONDS)
            for _ in range(REPEATS):
                first()
                seconds.append(timed())
    return [statistics.median(t) * 1e6 for t in times.values()]


def main() -> None:
    rows = []
    for label, coretype in KERNELS.items():
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
        if coretype:
            env["OPENBLAS_CORETYPE"] = coretype
        out = subprocess.run(
            [sys.executable, __file__, "--measure"], env=env, capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
        medians = list(map(float, out.split()))
        for i, loop in enumerate(("3000 Python additions", "30 ReLUs of 256 x 128")):
            values = medians[i * len(PHASES) : (i + 1) * len(PHASES)]
            rows.append(f"| {label} | {loop} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    print("Median µs of each loop:\n")
    print("| kernels | loop | " + " | ".join(PHASES) + " |")
    print("|---|---|" + "---:|" * len(PHASES))
    print("\n".join(rows))


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        print(" ".join(f"{v:.3f}" for v in measure()))
    else:
        main()
