"""Paired A/B of the core's training speed: models/ of a git revision against the working tree.

``.venv/bin/python bench/ab_core.py REV [--case mlp|relu|tiny] [--rounds N]`` exports REV's
``models/`` into a temporary folder and starts one process per version, each holding the
same synthetic data and a network built the same way. The two take turns, one run at a
time, order swapped every round, so a slow spell of the machine hits both; the report gives
each median and the median of the paired differences (new - base), which a few percent of
noise between runs does not hide as it does between separate benchmark runs.

Cases: ``mlp``, one epoch of bench/core.py's MLP (784-256-128-10, SGD, batch 128, 60,000
samples); ``relu``, 500 full-batch epochs of [12288, 20, 7, 5, 1] on 209 examples;
``tiny``, one epoch of [4, 4, 4, 10] on 60,000 samples (batch 128), where the products cost
nothing and the per-batch overhead is all there is.
"""

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REST_SECONDS = 0.5
CASES = {  # name: (examples, layer_dims, output, train options)
    "mlp": (60_000, [784, 256, 128, 10], "softmax", {"optimizer": "sgd", "batch_size": 128}),
    "relu": (209, [12288, 20, 7, 5, 1], "sigmoid", {"epochs": 500, "learning_rate": 0.0075}),
    "tiny": (60_000, [4, 4, 4, 10], "softmax", {"optimizer": "sgd", "batch_size": 128}),
}


def serve(root: str, case: str) -> None:
    """A version's process: one timed run of ``case`` per line read, its seconds written back."""
    sys.path.insert(0, root)
    import numpy as np

    from models import Network, train

    m, dims, output, options = CASES[case]
    options = {"epochs": 1, "learning_rate": 0.01, **options}
    rng = np.random.default_rng(0)
    rows = rng.random((m, dims[0]), dtype=np.float32)
    labels = rng.integers(0, dims[-1] if dims[-1] > 1 else 2, m)
    net = Network(dims, "relu", output, init="he", seed=1)

    def run() -> float:
        start = time.perf_counter()
        train(net, rows.T, labels[None, :], **options)
        return time.perf_counter() - start

    def run_then_rest() -> float:
        seconds = run()
        # OpenBLAS's threads spin for a while (~0.1 s) after their last product before they
        # sleep: left spinning, they would take a core from the other version's run.
        time.sleep(REST_SECONDS)
        return seconds

    run_then_rest()  # warm-up
    print("ready", flush=True)
    for _ in sys.stdin:
        print(run_then_rest(), flush=True)


def export_models(rev: str, folder: Path) -> None:
    """REV's models/ into folder/models (git archive)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "models"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the base revision, e.g. HEAD~1")
    parser.add_argument("--case", choices=sorted(CASES), default="mlp")
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gradq-ab-") as tmp:
        export_models(args.rev, Path(tmp))
        versions = {"base": tmp, "new": str(ROOT)}
        command = [sys.executable, __file__, "--serve"]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
        procs = {
            name: subprocess.Popen([*command, root, args.case], **pipes)
            for name, root in versions.items()
        }
        try:
            for proc in procs.values():
                assert proc.stdout.readline().strip() == "ready"
            times = {name: [] for name in procs}
            for r in range(args.rounds):
                for name in ("base", "new") if r % 2 else ("new", "base"):
                    procs[name].stdin.write("run\n")
                    procs[name].stdin.flush()
                    times[name].append(float(procs[name].stdout.readline()))
        finally:
            for proc in procs.values():
                proc.stdin.close()
                proc.wait()
    base, new = times["base"], times["new"]
    diffs = [n - b for b, n in zip(base, new, strict=True)]
    faster = sum(d < 0 for d in diffs) / len(diffs)
    print(
        f"{args.case}, {args.rounds} rounds: base ({args.rev}) median "
        f"{statistics.median(base) * 1e3:.1f} ms, new (working tree) "
        f"{statistics.median(new) * 1e3:.1f} ms; paired difference new - base: median "
        f"{statistics.median(diffs) * 1e3:+.2f} ms "
        f"({statistics.median(d / b for d, b in zip(diffs, base, strict=True)):+.1%}); "
        f"new faster in {faster:.0%} of rounds"
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
