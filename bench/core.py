"""The core benchmark (issue 2, "Speed"): gradq's NumPy core against PyTorch CPU and scikit-learn.

``make bench`` runs ``.venv/bin/python bench/core.py --write docs/benchmarks.md``. One process,
default environment (no thread settings touched), float32 synthetic data. The machine is shared,
so a case's contenders alternate within every repeat (order rotated each repeat) and the report
gives medians, minima, ratios of medians and the share of CPU other processes used meanwhile.
"""

import datetime
import gc
import itertools
import os
import platform
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sections import (  # bench/ is on sys.path: scripts run from it
    argument_parser,
    cpu,
    publish,
    targets_table,
)

ROOT = Path(__file__).resolve().parents[1]
MLP_DIMS, MLP_M, BATCH, MLP_LR, CAT_M = [784, 256, 128, 10], 60_000, 128, 0.01, 209
FULL_BATCH = {  # name -> (layer_dims, init, learning rate, epochs the issue asks for)
    "logistic regression [12288, 1]": ([12288, 1], "zeros", 0.005, 2000),
    "relu network [12288, 20, 7, 5, 1]": ([12288, 20, 7, 5, 1], "he", 0.0075, 2500),
}
TORCH, DATALOADER = "PyTorch (randperm + X[idx])", "PyTorch DataLoader(shuffle=True), secondary"
SKLEARN, FLOOR = "scikit-learn MLPClassifier", "its 8 matmuls alone (floor)"
TORCH_FLOOR = "PyTorch's 8 matmuls alone, secondary"
PLAIN = "gradq, plain engine (models/plain.py), secondary"
TARGETS = {TORCH: 1.4, SKLEARN: 1.5}  # gradq's speedup over each MLP peer (issue 27)
FLOOR_TARGET, FULL_TARGET, MEMORY_TARGET = 1.3, 10.0, 2.0

Run = Callable[[int], None]  # run(epochs) trains a contender's model (built once) that long


def import_core():
    """Network and train from models/ (the repository root goes on sys.path)."""
    sys.path.insert(0, str(ROOT))
    from models.network import Network
    from models.training import train

    return Network, train


def synthetic(m: int, n_x: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (m, n_x) float32 C-contiguous in [0, 1) and labels (m,) int64 in [0, classes)."""
    rng = np.random.default_rng(0)
    return rng.random((m, n_x), dtype=np.float32), rng.integers(0, classes, m)


def gradq_network(core, dims: list[int], init: str):
    output = "softmax" if dims[-1] > 1 else "sigmoid"
    return core[0](dims, "relu", output, init=init, seed=1, dtype="float32")


def gradq_run(core, rows, labels, dims, init, **options) -> Run:
    net, train = gradq_network(core, dims, init), core[1]
    return lambda epochs: train(net, rows.T, labels[None, :], epochs=epochs, **options)


def torch_model(dims: list[int], zeros: bool = False):
    """nn.Sequential of nn.Linear with nn.ReLU between them; all zeros if asked."""
    import torch.nn as nn

    pairs = list(itertools.pairwise(dims))
    layers = [m for a, b in pairs[:-1] for m in (nn.Linear(a, b), nn.ReLU())]
    model = nn.Sequential(*layers, nn.Linear(*pairs[-1]))
    for p in model.parameters() if zeros else ():
        nn.init.zeros_(p)
    return model


def torch_minibatch_run(rows, labels, loader: bool = False) -> Run:
    """The careful epoch (randperm, batches by index) or the idiomatic DataLoader one."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    X, Y = torch.from_numpy(rows), torch.from_numpy(labels)
    model, loss_fn = torch_model(MLP_DIMS), torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=MLP_LR)
    data = DataLoader(TensorDataset(X, Y), batch_size=BATCH, shuffle=True)

    def by_index():
        order = torch.randperm(X.shape[0])
        return ((X[idx], Y[idx]) for idx in order.split(BATCH))

    def run(epochs):
        for _ in range(epochs):
            for xb, yb in data if loader else by_index():
                opt.zero_grad(set_to_none=True)
                loss_fn(model(xb), yb).backward()
                opt.step()

    return run


def torch_full_batch_run(rows, labels, dims, init, lr) -> Run:
    import torch

    X, Y = torch.from_numpy(rows), torch.from_numpy(labels.astype(np.float32))[:, None]
    model, loss_fn = torch_model(dims, zeros=init == "zeros"), torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def run(epochs):
        for _ in range(epochs):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(X), Y).backward()
            opt.step()

    return run


def sklearn_run(rows, labels) -> Run:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(256, 128), activation="relu", solver="sgd", batch_size=BATCH,
        learning_rate_init=MLP_LR, momentum=0.0, nesterovs_momentum=False, max_iter=1,
        shuffle=True, alpha=0.0, random_state=0,
    )  # fmt: skip

    def run(epochs):
        # partial_fit is exactly one shuffled pass over the data from the current weights, as
        # gradq's and torch's epochs are; fit(max_iter=1) would also re-initialize each time.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(epochs):
                clf.partial_fit(rows, labels, classes=np.arange(MLP_DIMS[-1]))

    return run


def matmul_floor_run(rows, dims, batch) -> Run:
    """An epoch's 8 products alone: W1@Xbᵀ, W2@A1, W3@A2; dW3=dZ3@A2ᵀ, dA2=W3ᵀ@dZ3,
    dW2=dZ2@A1ᵀ, dA1=W2ᵀ@dZ2, dW1=dZ1@Xb; same shapes and batch count, preallocated out=."""
    m = rows.shape[0]
    sizes = batch_sizes(m, batch)
    rng = np.random.default_rng(0)
    W1, W2, W3 = (rng.random((b, a), dtype=np.float32) - 0.5 for a, b in itertools.pairwise(dims))
    from models.fast.workspace import Workspace

    def buffers_for(b):
        # The activations and gradients in gradq's own layouts (its Workspace), which decide
        # which OpenBLAS kernels run: the floor is that of gradq's own products.
        ws = Workspace(dims, b, np.dtype(np.float32))
        g = ws.grads
        return (rows[:b].copy(), ws.A[1], ws.A[2], ws.dZ[3], ws.dZ[2], ws.dZ[1],
                g["dW1"], g["dW2"], g["dW3"])  # fmt: skip

    buffers = {b: buffers_for(b) for b in set(sizes)}

    def run(epochs):
        for _ in range(epochs):
            for b in sizes:
                Xb, A1, A2, dZ3, dZ2, dZ1, dW1, dW2, dW3 = buffers[b]
                np.matmul(W1, Xb.T, out=A1)
                np.matmul(W2, A1, out=A2)
                np.matmul(W3, A2, out=dZ3)  # Z3, then dZ3 in place: the shapes are what count
                np.matmul(dZ3, A2.T, out=dW3)
                np.matmul(W3.T, dZ3, out=dZ2)
                np.matmul(dZ2, A1.T, out=dW2)
                np.matmul(W2.T, dZ2, out=dZ1)
                np.matmul(dZ1, Xb, out=dW1)

    return run


def torch_matmul_floor_run(rows, dims, batch) -> Run:
    """The same 8 products in PyTorch, as nn.Linear computes them (x Wᵀ forward; dZᵀ x and
    dZ W backward) with its BLAS: what the PyTorch epoch spends in products."""
    import torch

    m = rows.shape[0]
    sizes = batch_sizes(m, batch)
    W1, W2, W3 = (torch.rand(b, a) - 0.5 for a, b in itertools.pairwise(dims))
    n1, n2, n3 = dims[1:]
    buffers = {
        b: (torch.from_numpy(rows[:b].copy()), torch.empty(b, n1), torch.empty(b, n2),
            torch.empty(b, n3), torch.empty(b, n2), torch.empty(b, n1),
            torch.empty_like(W1), torch.empty_like(W2), torch.empty_like(W3))
        for b in set(sizes)
    }  # fmt: skip

    def run(epochs):
        for _ in range(epochs):
            for b in sizes:
                Xb, A1, A2, dZ3, dZ2, dZ1, dW1, dW2, dW3 = buffers[b]
                torch.mm(Xb, W1.t(), out=A1)
                torch.mm(A1, W2.t(), out=A2)
                torch.mm(A2, W3.t(), out=dZ3)
                torch.mm(dZ3.t(), A2, out=dW3)
                torch.mm(dZ3, W3, out=dZ2)
                torch.mm(dZ2.t(), A1, out=dW2)
                torch.mm(dZ2, W2, out=dZ1)
                torch.mm(dZ1.t(), Xb, out=dW1)

    return run


def batch_sizes(m: int, batch: int) -> list[int]:
    """The sizes of an epoch's batches: full ones, then the remainder if any."""
    return [batch] * (m // batch) + ([m % batch] if m % batch else [])


def busy_cpu_seconds() -> float:
    """CPU seconds all processes have used so far (/proc/stat: every non-idle field)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def interleaved(runs: dict[str, Run], epochs: int, warmup: int, repeats: int):
    """Seconds per repeat of each contender, alternated and rotated, after a warm-up each; and
    the share of the machine's CPU time that other processes used meanwhile."""
    for run in runs.values():
        run(warmup)
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    wall, busy, own = time.perf_counter(), busy_cpu_seconds(), time.process_time()
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            start = time.perf_counter()
            runs[name](epochs)
            times[name].append(time.perf_counter() - start)
    others = busy_cpu_seconds() - busy - (time.process_time() - own)
    return times, max(others, 0.0) / ((time.perf_counter() - wall) * os.cpu_count())


def peak_memory(core, name, rows, labels, dims, init, epochs, **options) -> tuple[str, str]:
    """A table row and a verdict: (dataset + traced peak of train) / (dataset + params + one
    batch's activations: every layer's output, and the input when the batch is a gathered copy)."""
    net = gradq_network(core, dims, init)
    dataset = rows.nbytes + labels.nbytes
    params = sum(p.nbytes for p in net.params.values())
    b = options.get("batch_size") or rows.shape[0]
    activations = b * (sum(dims[1:]) + (dims[0] if b < rows.shape[0] else 0)) * rows.itemsize
    gc.collect()
    tracemalloc.start()
    core[1](net, rows.T, labels[None, :], epochs=epochs, **options)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ratio = (dataset + peak) / (dataset + params + activations)
    row = f"| {name}, {epochs} epoch(s) | {dataset / 2**20:.1f} | {peak / 2**20:.2f} | "
    return row + f"{ratio:.3f} |", verdict(f"{name}: peak memory ratio", ratio, MEMORY_TARGET)


def machine() -> list[str]:
    import sklearn
    import torch

    try:
        from threadpoolctl import threadpool_info

        pools = [describe_pool(p) for p in threadpool_info()]
    except ImportError:
        pools = [str(np.show_config(mode="dicts")["Build Dependencies"]["blas"])]
    return [
        f"- Machine: nproc {len(os.sched_getaffinity(0))}, {cpu()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), scikit-learn {sklearn.__version__}",
        f"- BLAS and thread pools (threadpoolctl): {'; '.join(pools)}",
    ]


def describe_pool(pool: dict) -> str:
    """'openblas 0.3.31 SkylakeX (2 threads, numpy.libs/...so)' from threadpoolctl's info."""
    what = [str(pool[k]) for k in ("internal_api", "version", "architecture") if pool.get(k)]
    where = pool["filepath"].split("site-packages/")[-1]
    return f"{' '.join(what)} ({pool['num_threads']} threads, {where})"


def case_table(times, samples: float, scale: float = 1.0) -> list[str]:
    """Median and min seconds, samples/s, and each peer's time over gradq's (> 1: gradq wins)."""
    med = {n: statistics.median(t) * scale for n, t in times.items()}
    low = {n: min(t) * scale for n, t in times.items()}
    lines = ["| contender | median s | min s | samples/s | ÷ gradq, medians | ÷ gradq, mins |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for n in times:
        ratios = ["", ""] if n == "gradq" else [f"{med[n] / med['gradq']:.2f}",
                                                 f"{low[n] / low['gradq']:.2f}"]  # fmt: skip
        lines.append(f"| {n} | {med[n]:.3f} | {low[n]:.3f} | {samples / med[n]:,.0f} | "
                     f"{ratios[0]} | {ratios[1]} |")  # fmt: skip
    return lines


def verdict(name: str, measured: float, target: float, at_least: bool = False) -> str:
    ok = measured >= target if at_least else measured <= target
    sign = ">=" if at_least else "<="
    return f"| {name} | {measured:.2f} | {sign} {target} | {'PASS' if ok else '**FAIL**'} |"


def case_lines(title: str, times, samples: float, scale: float, noise: float) -> list[str]:
    share = f"Other processes used {noise:.0%} of the machine's CPU time during this case."
    return ["", title, "", *case_table(times, samples, scale), "", share]


def mlp_case(core, repeats: int):
    """The MLP epoch: report lines, target rows, memory row."""
    rows, labels = synthetic(MLP_M, MLP_DIMS[0], MLP_DIMS[-1])
    sgd = {"optimizer": "sgd", "learning_rate": MLP_LR, "batch_size": BATCH}
    runs = {
        "gradq": gradq_run(core, rows, labels, MLP_DIMS, "he", **sgd),
        PLAIN: gradq_run(core, rows, labels, MLP_DIMS, "he", engine="plain", **sgd),
        FLOOR: matmul_floor_run(rows, MLP_DIMS, BATCH),
        TORCH_FLOOR: torch_matmul_floor_run(rows, MLP_DIMS, BATCH),
        TORCH: torch_minibatch_run(rows, labels),
        DATALOADER: torch_minibatch_run(rows, labels, loader=True),
        SKLEARN: sklearn_run(rows, labels),
    }
    times, noise = interleaved(runs, 1, 1, repeats)
    med = {n: statistics.median(t) for n, t in times.items()}
    title = f"### MLP {MLP_DIMS}, ReLU/softmax, SGD, batch {BATCH}, {MLP_M:,} samples, 1 epoch"
    lines = case_lines(title, times, MLP_M, 1.0, noise)
    targets = [verdict(f"MLP: gradq speedup over {p}", med[p] / med["gradq"], t, at_least=True)
               for p, t in TARGETS.items()]  # fmt: skip
    targets.append(verdict("MLP: gradq time ÷ its 8 matmuls", med["gradq"] / med[FLOOR],
                           FLOOR_TARGET))  # fmt: skip
    memory, memory_verdict = peak_memory(core, "MLP", rows, labels, MLP_DIMS, "he", 1, **sgd)
    return lines, [*targets, memory_verdict], [memory]


def full_batch_case(core, name: str, repeats: int, timed_epochs: int | None):
    """One full-batch case at the catvnoncat shapes: report lines, target rows, memory row."""
    dims, init, lr, epochs = FULL_BATCH[name]
    timed = min(epochs, timed_epochs or epochs)
    rows, labels = synthetic(CAT_M, dims[0], 2)
    gd = {"optimizer": "gd", "learning_rate": lr}
    runs = {
        "gradq": gradq_run(core, rows, labels, dims, init, **gd),
        PLAIN: gradq_run(core, rows, labels, dims, init, engine="plain", **gd),
        "PyTorch (full batch)": torch_full_batch_run(rows, labels, dims, init, lr),
    }
    times, noise = interleaved(runs, timed, min(timed, 20), repeats)
    speedup = statistics.median(times["PyTorch (full batch)"]) / statistics.median(times["gradq"])
    title = f"### Full batch, m = {CAT_M}: {name}, gd, lr {lr}, {epochs} epochs"
    if timed != epochs:
        title += f" (timed {timed} epochs per repeat, seconds scaled by {epochs / timed:g})"
    lines = case_lines(title, times, CAT_M * epochs, epochs / timed, noise)
    # The timed number of epochs: the Gram form (and its G) is used as in the timed runs.
    memory, memory_verdict = peak_memory(core, name, rows, labels, dims, init, timed, **gd)
    target = verdict(f"{name}: gradq speedup over PyTorch", speedup, FULL_TARGET, at_least=True)
    return lines, [target, memory_verdict], [memory]


def report(args) -> str:
    """The whole report, as markdown."""
    core, started, environment = import_core(), time.perf_counter(), machine()
    repeats = 2 if args.quick else args.repeats
    mlp_repeats = 2 if args.quick else args.mlp_repeats
    timed_epochs = args.full_epochs or (100 if args.quick else None)
    cases = [mlp_case(core, mlp_repeats)]
    cases += [full_batch_case(core, name, repeats, timed_epochs) for name in FULL_BATCH]
    lines, targets, memory = ([x for case in cases for x in case[i]] for i in range(3))
    command = "`make bench` (`.venv/bin/python bench/core.py --write docs/benchmarks.md`)"
    quick = ", here with `--quick`: a smoke run, not a measurement" if args.quick else ""
    return "\n".join([
        "## Core: gradq vs PyTorch CPU and scikit-learn", "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Command: {command}{quick}", *environment,
        f"- Repeats: {mlp_repeats} per contender for the MLP, {repeats} for the full-batch cases; "
        "interleaved (order rotated every repeat), after a warm-up each. Verdicts use the ratio "
        "of medians.",
        "- Data: synthetic, float32, one example per row, passed to gradq as `rows.T`.", *lines,
        "", "### Peak memory of gradq's `train` (tracemalloc, started after the data was made)", "",
        "| run | dataset MiB | traced peak MiB | (dataset + peak) ÷ (dataset + params + "
        "batch activations) |", "|---|---:|---:|---:|", *memory, "",
        "Batch activations: every layer's output for one batch, plus the batch's input when it is "
        "a gathered copy (mini-batches; a full batch is the dataset itself).", "",
        *targets_table(targets, "Targets (issues 2 and 27)", time.perf_counter() - started),
    ]) + "\n"  # fmt: skip


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per contender")
    # A repeat of the MLP case takes seconds, and a shared machine's slow spells last several
    # of them: more repeats than the full-batch cases get, so a spell moves the median less.
    parser.add_argument("--mlp-repeats", type=int, default=15, help="timed runs, MLP case")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, 100 epochs")
    parser.add_argument("--full-epochs", type=int, help="full-batch epochs timed per repeat")
    args = parser.parse_args()
    publish(report(args), args.write, "core")


if __name__ == "__main__":
    main()
