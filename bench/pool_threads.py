"""Two jobs trained at once on this machine, as a worker's two pool children train them: with
OpenBLAS's default threads in each (one per core) and with cores ÷ concurrency threads each
(workers/blas_threads.py). One job alone is the floor. Run by hand (`make bench`).

Each contender is two fresh processes that train a [64, 32] ReLU network on the digits for
``--epochs`` full-batch epochs at the same time; the time is the wall clock until both end.
"""

import multiprocessing
import os
import statistics
import time
from datetime import UTC, datetime

from sections import argument_parser, publish  # bench/ is on sys.path: scripts run from it


def train_digits(epochs: int, blas_threads: int | None) -> None:
    from threadpoolctl import threadpool_limits

    from models import Network, load_dataset, train, train_val_split

    if blas_threads is not None:
        threadpool_limits(limits=blas_threads, user_api="blas")
    ds = load_dataset("digits")
    X, Y, X_val, Y_val = train_val_split(ds.X, ds.Y, 0.25, seed=1)
    net = Network([ds.n_x, 64, 32, 10], hidden_activation="relu", output="softmax", seed=1)
    train(net, X, Y, learning_rate=0.05, epochs=epochs, X_val=X_val, Y_val=Y_val)


def wall_seconds(jobs: int, epochs: int, blas_threads: int | None) -> float:
    context = multiprocessing.get_context("spawn")  # fresh processes, as billiard's children
    processes = [
        context.Process(target=train_digits, args=(epochs, blas_threads)) for _ in range(jobs)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        assert process.exitcode == 0
    return time.perf_counter() - started


def report(args) -> str:
    cores = os.cpu_count() or 1
    contenders = {
        "1 job alone, default BLAS threads (floor)": (1, None),
        f"2 jobs at once, default BLAS threads ({cores} each)": (2, None),
        f"2 jobs at once, {max(1, cores // 2)} BLAS thread(s) each (gradq's worker)": (
            2, max(1, cores // 2),
        ),
    }  # fmt: skip
    times = {name: [] for name in contenders}
    for repeat in range(args.repeats):
        names = list(contenders)
        names = names[repeat % len(names) :] + names[: repeat % len(names)]  # rotate the order
        for name in names:
            jobs, threads = contenders[name]
            times[name].append(wall_seconds(jobs, args.epochs, threads))
    medians = {name: statistics.median(values) for name, values in times.items()}
    limited, default = list(medians)[2], list(medians)[1]
    rows = [
        f"| {name} | {medians[name]:.2f} | {min(times[name]):.2f} | "
        f"{medians[name] / medians[limited]:.2f} |"
        for name in contenders
    ]
    return "\n".join(
        [
            "## Workers: two jobs at once in one worker's pool",
            "",
            f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- Command: `.venv/bin/python bench/pool_threads.py --epochs {args.epochs} "
            f"--repeats {args.repeats} --write docs/benchmarks.md`",
            f"- Machine: nproc {cores}; each job: [64, 32] ReLU network on digits, "
            f"{args.epochs} full-batch epochs, in a process of its own (wall clock from start "
            "to the last exit, process start and data loading included)",
            "",
            "| contender | median s | min s | ÷ gradq's worker, medians |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"Two jobs at once with one BLAS thread share each are "
            f"{medians[default] / medians[limited]:.1f} times as fast as with the default threads.",
        ]
    )


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    publish(report(args), args.write, "pool-threads")


if __name__ == "__main__":
    main()
