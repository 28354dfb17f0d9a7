"""Scale: the same jobs on the real compose stack with one worker, then with two.

``.venv/bin/python bench/scale.py --write docs/benchmarks.md`` brings up docker-compose.yml on
a Docker engine (tests/compose/compose_stack.py: stand-in base images, gradq's image from the
Dockerfile, free published ports), submits ``--jobs`` identical jobs through the API, waits for
all of them, and reads each job's phases from the workers' log lines; then does it again with
``--scale worker=2``. Reported: the makespan, the throughput and its ratio, and each job's
fixed cost (its time but training) with the machine's cores and each worker's BLAS threads.

The fixed cost is measured twice: in the batch, where every core trains and the MLflow server
and PostgreSQL wait for a core as the jobs do, and with ``--one-at-a-time`` jobs sent one after
the other, where no job waits for a core: what a second worker (or host) adds to a job's fixed
cost shows there, apart from the cores one host shares.
"""
# ruff: noqa: E402  (tests/ is not installed: the repository root goes on sys.path first)

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from job_phases import job_phases  # bench/job_phases.py
from sections import argument_parser, write_section

from tests.compose.compose_stack import compose_stack
from workers.blas_threads import one_thread_suffices, threads_per_child

SPEC = {
    "experiment": "scale",
    "dataset": {"name": "digits"},
    "model": {"hidden_layers": [64, 32], "hidden_activation": "relu", "output": "softmax"},
    "training": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 200, "batch_size": 64},
}
LAYER_DIMS = [64, 64, 32, 10]  # digits: 8 × 8 inputs, 10 classes


def machine() -> str:
    """The CPU and the engine, as the report names them."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    engine = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
    ).stdout.strip()
    compose = subprocess.run(
        ["docker-compose", "version", "--short"], capture_output=True, text=True
    ).stdout.strip()
    return f"{model}, Docker engine {engine}, docker-compose {compose}"


def run(workers: int, jobs: int, one_at_a_time: int, timeout: float) -> dict:
    """Makespan and per-job phases of ``jobs`` jobs on a stack with ``workers`` workers, then
    the fixed cost of ``one_at_a_time`` jobs each sent when the one before it ended."""
    with compose_stack(workers=workers) as stack:
        stack.wait(stack.submit({**SPEC, "name": "warm-up"}))  # imports, MLflow's first calls
        started = time.monotonic()
        ids = [stack.submit({**SPEC, "name": f"job-{i}"}) for i in range(jobs)]
        done = [stack.wait(job_id, timeout=timeout) for job_id in ids]
        makespan = time.monotonic() - started
        alone = []
        for i in range(one_at_a_time):  # each sent when the one before it ended
            alone.append(stack.submit({**SPEC, "name": f"alone-{i}"}))
            done.append(stack.wait(alone[-1], timeout=timeout))
        failed = [job["id"] for job in done if job["status"] != "succeeded"]
        log = stack.compose("logs", "--no-color", "worker", timeout=120)
    phases = job_phases(log, ids)
    return {
        "workers": workers,
        "makespan": makespan,
        "failed": len(failed),
        "per_minute": 60 * (jobs - len(failed)) / makespan,
        "fixed_ms": statistics.median(fixed_costs(phases)),
        "alone_fixed_ms": statistics.median(fixed_costs(job_phases(log, alone))),
        "training_ms": statistics.median(phases["training"]),
        "total_ms": statistics.median(phases["total"]),
    }


def fixed_costs(phases: dict[str, list[float]]) -> list[float]:
    """Each attempt's time but its training, in ms."""
    return [total - training for total, training in zip(phases["total"], phases["training"],
                                                         strict=True)]  # fmt: skip


def report(rows: list[dict], jobs: int) -> str:
    one, two = rows
    cores = os.cpu_count() or 1
    lines = [
        f"{jobs} jobs (digits, [64, 32], Adam, 200 epochs) on the real compose stack, "
        f"{machine()}; each worker container sees {cores} cores and gives its one pool child "
        f"{threads_per_child(cores, 1)} BLAS threads, of which this job's training uses "
        f"{1 if one_thread_suffices(LAYER_DIMS, SPEC['training']['batch_size']) else 'all'}.",
        "",
        "| workers | makespan | jobs/min | median job | median training | median fixed cost "
        "| fixed cost, one job at a time | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['makespan']:.1f} s | {row['per_minute']:.1f} "
            f"| {row['total_ms']:.0f} ms | {row['training_ms']:.0f} ms | {row['fixed_ms']:.0f} ms "
            f"| {row['alone_fixed_ms']:.0f} ms | {row['failed']} |"
        )
    ratio = two["per_minute"] / one["per_minute"]
    growth = two["fixed_ms"] / one["fixed_ms"]
    alone = two["alone_fixed_ms"] / one["alone_fixed_ms"]
    lines += [
        "",
        f"Throughput with two workers: **{ratio:.2f} times** one worker's. The fixed cost per job "
        f"with two workers is **{alone:.2f} times** its cost with one when no job waits for a "
        f"core (one at a time), and {growth:.2f} times in the batch, where the cores are shared.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--one-at-a-time", type=int, default=10, help="jobs sent one by one")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per job, at most")
    args = parser.parse_args()
    rows = [run(workers, args.jobs, args.one_at_a_time, args.timeout) for workers in (1, 2)]
    text = report(rows, args.jobs)
    print(text)
    if args.write:
        command = "`.venv/bin/python bench/scale.py --write docs/benchmarks.md`"
        section = f"## Scale: one worker, then two (compose)\n\n{command}\n\n{text}\n"
        write_section(args.write, "scale", section)


if __name__ == "__main__":
    main()
