"""What the Gram form's setup costs: G = XᵀX and P₀ = W[1]₀ X in float64, in one pass over X
(models/fast/gram.py ``_gram_and_base_product``) against one product at a time (``_product64``
twice, each converting its own chunks of X).

``.venv/bin/python bench/gram_setup.py`` times both, alternated, 30 times each, on the course's
shapes (X: 12288 × 209 float32, W[1]: 20 × 12288), and prints the medians and how far the two
results are apart.
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.fast.gram import _gram_and_base_product, _product64

REPEATS = 30


def main() -> None:
    rng = np.random.default_rng(0)
    rows = rng.random((209, 12288), dtype=np.float32)  # Xᵀ, one example per row
    base = (rng.standard_normal((20, 12288)) * 0.01).astype(np.float32)
    contenders = {
        "one product at a time": lambda: (_product64(rows, rows.T), _product64(base, rows.T)),
        "one pass": lambda: _gram_and_base_product(rows, base),
    }
    times = {name: [] for name in contenders}
    for _ in range(REPEATS):
        for name, run in contenders.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    for name, seconds in times.items():
        print(f"{name}: {statistics.median(seconds) * 1e3:.1f} ms (median of {REPEATS})")
    (g_old, p_old), (g_new, p_new) = (run() for run in contenders.values())
    print(f"G apart by {np.abs(g_old - g_new).max() / np.abs(g_old).max():.1e} of its largest")
    print(f"P0 apart by {np.abs(p_old - p_new).max() / np.abs(p_old).max():.1e} of its largest")


if __name__ == "__main__":
    main()
