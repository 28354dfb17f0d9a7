"""Scale: the same jobs on the real compose stack with one worker, then with two.

``.venv/bin/python bench/scale.py --write docs/benchmarks.md`` brings up docker-compose.yml on
a Docker engine (tests/compose/compose_stack.py: stand-in base images, gradq's image from the
Dockerfile, free published ports), submits ``--jobs`` identical jobs through the API, waits for
all of them, and reads each job's phases from the workers' log lines; then does it again with
``--scale worker=2``. Reported: the makespan, the throughput and its ratio, and each job's
fixed cost (its time but training) with the machine's cores and each worker's BLAS threads.
"""
# ruff: noqa: E402  (tests/ is not installed: the repository root goes on sys.path first)

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from job_phases import job_phases  # bench/job_phases.py
from sections import write_section

from tests.compose.compose_stack import compose_stack
from workers.blas_threads import threads_per_child

SPEC = {
    "experiment": "scale",
    "dataset": {"name": "digits"},
    "model": {"hidden_layers": [64, 32], "hidden_activation": "relu", "output": "softmax"},
    "training": {"optimizer": "adam", "learning_rate": 0.01, "epochs": 200, "batch_size": 64},
}


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


def run(workers: int, jobs: int, timeout: float) -> dict:
    """Makespan and per-job phases of ``jobs`` jobs on a stack with ``workers`` workers."""
    with compose_stack(workers=workers) as stack:
        stack.wait(stack.submit({**SPEC, "name": "warm-up"}))  # imports, MLflow's first calls
        started = time.monotonic()
        ids = [stack.submit({**SPEC, "name": f"job-{i}"}) for i in range(jobs)]
        done = [stack.wait(job_id, timeout=timeout) for job_id in ids]
        makespan = time.monotonic() - started
        failed = [job["id"] for job in done if job["status"] != "succeeded"]
        log = stack.compose("logs", "--no-color", "worker", timeout=120)
    phases = job_phases(log, ids)
    pairs = zip(phases["total"], phases["training"], strict=True)
    fixed = [total - training for total, training in pairs]
    return {
        "workers": workers,
        "makespan": makespan,
        "failed": len(failed),
        "per_minute": 60 * (jobs - len(failed)) / makespan,
        "fixed_ms": statistics.median(fixed),
        "training_ms": statistics.median(phases["training"]),
        "total_ms": statistics.median(phases["total"]),
    }


def report(rows: list[dict], jobs: int) -> str:
    one, two = rows
    cores = os.cpu_count() or 1
    lines = [
        f"{jobs} jobs (digits, [64, 32], Adam, 200 epochs) on the real compose stack, "
        f"{machine()}; each worker container sees {cores} cores and gives its one pool child "
        f"{threads_per_child(cores, 1)} BLAS threads.",
        "",
        "| workers | makespan | jobs/min | median job | median training | median fixed cost "
        "| failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['makespan']:.1f} s | {row['per_minute']:.1f} "
            f"| {row['total_ms']:.0f} ms | {row['training_ms']:.0f} ms | {row['fixed_ms']:.0f} ms "
            f"| {row['failed']} |"
        )
    ratio = two["per_minute"] / one["per_minute"]
    growth = two["fixed_ms"] / one["fixed_ms"]
    lines += [
        "",
        f"Throughput with two workers: **{ratio:.2f} times** one worker's; the fixed cost per job "
        f"with two is {growth:.2f} times its cost with one.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per job, at most")
    parser.add_argument("--write", type=Path, help="docs/benchmarks.md to update")
    args = parser.parse_args()
    rows = [run(workers, args.jobs, args.timeout) for workers in (1, 2)]
    text = report(rows, args.jobs)
    print(text)
    if args.write:
        command = "`.venv/bin/python bench/scale.py --write docs/benchmarks.md`"
        section = f"## Scale: one worker, then two (compose)\n\n{command}\n\n{text}\n"
        write_section(args.write, "scale", section)


if __name__ == "__main__":
    main()
