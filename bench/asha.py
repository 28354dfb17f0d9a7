"""The halving benchmark: a 27-trial random sweep on digits with asynchronous successive halving
(eta 3, 4 rungs) against the same 27 trials run to their end, on one worker.

``.venv/bin/python bench/asha.py --write docs/benchmarks.md`` starts the stack of
bench/bench_stack.py (an MLflow server on PostgreSQL, the API, one Celery worker of concurrency
1 on Redis db 9), submits the sweep with halving, waits for every trial, then the same sweep
(same space and seed: the same 27 configurations) without it, and compares the epochs trained
(the trials' epochs done, from SQL), the time from the first claim to the last end, and the best
trial's val_accuracy. Issue 28's targets: at most 1/5 of the epochs, at most 1/3 of the time,
and a best within 0.01 of the full sweep's.
"""
# ruff: noqa: E402  (tests/ is not installed: the repository root goes on sys.path first)

import datetime
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_stack  # bench/bench_stack.py
from bench_sweeps import SweepStack, run_benchmark, span, sweep_parser, sweep_stack
from sections import targets_table, verdicts

REDIS_DB = 9  # a db of its own (tests and other benchmarks use 10 to 15)
EPOCHS = 243
HALVING = {"eta": 3, "rungs": [EPOCHS // 27, EPOCHS // 9, EPOCHS // 3]}  # 9, 27, 81; then 243
SWEEP = {
    "base": {
        "dataset": {"name": "digits"},
        "model": {"hidden_activation": "relu", "output": "softmax"},
        "training": {"optimizer": "adam", "epochs": EPOCHS, "batch_size": 64},
    },
    "space": {
        "training.learning_rate": {"log_uniform": [0.0001, 0.3]},
        "model.hidden_layers": {"choice": [[8], [32], [64], [32, 16]]},
    },
    "trials": 27,
    "seed": 7,
}


def run_sweep(stack: SweepStack, request: dict, timeout: float) -> dict:
    """The sweep, the epochs its trials trained, its span, its trials' statuses and how many
    times they were handed back (waiting at a rung)."""
    sweep, trials = stack.run(request, timeout)
    epochs = sum(trial.progress_epoch or 0 for trial in trials)
    return {"sweep": sweep, "epochs": epochs, "seconds": span(trials),
            "statuses": sorted(t.status for t in trials),
            "pauses": sum(t.handoffs for t in trials)}  # fmt: skip


def measure(args) -> dict:
    with sweep_stack("asha", args.redis_db) as stack:
        experiment = f"bench-asha-{int(time.time())}"
        halved = run_sweep(stack, with_experiment(experiment, HALVING), args.timeout)
        full = run_sweep(stack, with_experiment(experiment, None), args.timeout)
        return {"halved": halved, "full": full, "machine": bench_stack.machine(stack.bench)}


def with_experiment(experiment: str, halving: dict | None) -> dict:
    base = {**SWEEP["base"], "experiment": experiment}
    return {**SWEEP, "base": base, "halving": halving}


def synchronous_share() -> float:
    """The share of the epochs synchronous successive halving trains: every trial to the first
    rung, the top 1/eta of them on to the next, and so on; what one worker taking the trials
    one after another comes to with waiting trials (contract/halving.py)."""
    rungs, eta, trials = [*HALVING["rungs"], EPOCHS], HALVING["eta"], SWEEP["trials"]
    epochs, before = 0, 0
    for rung in rungs:
        epochs += trials * (rung - before)
        trials, before = max(1, trials // eta), rung
    return epochs / (SWEEP["trials"] * EPOCHS)


def report(args, out: dict, seconds: float) -> tuple[str, bool]:
    halved, full = out["halved"], out["full"]
    epoch_share = halved["epochs"] / full["epochs"]
    # time = attempts * fixed + epochs * per_epoch, solved for the two sweeps; a trial handed
    # back waiting at a rung makes one more attempt.
    k = (SWEEP["trials"] + halved["pauses"]) / SWEEP["trials"]
    per_epoch = (halved["seconds"] - k * full["seconds"]) / (halved["epochs"] - k * full["epochs"])
    per_attempt = (full["seconds"] - full["epochs"] * per_epoch) / SWEEP["trials"]
    fixed_share = per_attempt * (SWEEP["trials"] + halved["pauses"]) / halved["seconds"]
    time_share = halved["seconds"] / full["seconds"]
    gap = full["sweep"]["best_value"] - halved["sweep"]["best_value"]
    targets = [
        ("epochs with halving ÷ without", f"{epoch_share:.3f}", "≤ 0.2", epoch_share <= 0.2),
        ("time with halving ÷ without", f"{time_share:.3f}", "≤ 0.333", time_share <= 1 / 3),
        ("best val_accuracy, without minus with", f"{gap:.4f}", "≤ 0.01", gap <= 0.01),
    ]
    target_rows, passed = verdicts(targets)
    stopped = halved["statuses"].count("cancelled")
    rows = [
        f"| {name} | {run['epochs']:,} | {run['seconds']:.1f} | {run['sweep']['best_value']:.4f} "
        f"| {run['statuses'].count('succeeded')} |"
        for name, run in (("with halving", halved), ("to the end", full))
    ]
    lines = [
        "## Sweeps: asynchronous successive halving against the full sweep",
        "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Command: `.venv/bin/python bench/asha.py {shlex.join(sys.argv[1:])}`",
        *out["machine"],
        f"- The sweep: {SWEEP['trials']} random trials (seed {SWEEP['seed']}) of digits, adam, "
        f"batch 64, {EPOCHS} epochs: learning rate log-uniform in [1e-4, 0.3], hidden layers "
        f"one of [8], [32], [64], [32, 16]; halving eta 3, rungs {HALVING['rungs']} and "
        f"{EPOCHS}. One worker of concurrency 1: trials reach the rungs one after another.",
        "",
        "| sweep | epochs trained | first claim → last end, s | best val_accuracy | "
        "trained to the end |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"With halving, {stopped} of {SWEEP['trials']} trials were stopped at a rung.",
        "",
        "### Where the time goes",
        "",
        f"- Solving `time = attempts * fixed + epochs * per_epoch` for the two sweeps: "
        f"{per_attempt:.2f} s of fixed cost an attempt (claim, data, gradient check, MLflow "
        f"run, artifacts, end) and {1000 * per_epoch:.2f} ms an epoch. The fixed cost is "
        f"{fixed_share:.0%} of the halved sweep's time.",
        f"- A trial reaching a rung waits there, paused with its checkpoint, until it is in "
        f"the top 1/eta of the arrivals or the rung is complete; so one worker trains what "
        f"synchronous successive halving would: {synchronous_share():.3f} of the epochs. "
        f"{halved['pauses']} trials were handed back waiting, and "
        f"{halved['statuses'].count('succeeded')} trained to the end.",
        "",
        *targets_table(target_rows, seconds=seconds),
    ]
    return "\n".join(lines) + "\n", passed


def main() -> int:
    args = sweep_parser(__doc__, REDIS_DB, timeout=1800).parse_args()
    return run_benchmark(args, measure, report, "asha")


if __name__ == "__main__":
    sys.exit(main())
