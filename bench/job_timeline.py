"""When each call of a job's attempt starts and ends, and its fixed cost: time outside training.

``.venv/bin/python bench/job_timeline.py [--epochs 20] [--repeats 12] [--show 2] [--root DIR]
[--tiny]`` runs ``workers.run.run_job`` on short jobs of the long job's network (bench/alone.py:
digits, [64, 32]; ``--tiny``: bench/trials.py's faces logistic regression) in this process, on a
new PostgreSQL database and a real ``mlflow server``, after one warm-up job. It prints the first
``--show`` attempts as timelines (ms from the claim: start, end, duration, call) and, over all
repeats, the medians of the time before training starts, after it ends, and the sum (the job's
fixed cost). ``--root`` imports gradq from another checkout (``git worktree add /tmp/old REV``),
so that two versions can be run in alternated blocks: the machine's speed drifts over minutes,
more than the few ms looked for.

The calls are timed by wrapping module functions and methods: for the record, not for use.
"""
# ruff: noqa: E402  (the repository root to import from goes on sys.path first)

import argparse
import functools
import statistics
import sys
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--repeats", type=int, default=12)
parser.add_argument("--show", type=int, default=2, help="attempts printed as timelines")
parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
parser.add_argument("--tiny", action="store_true", help="bench/trials.py's tiny trial instead")
args = parser.parse_args()
sys.path[:0] = [str(args.root), str(Path(__file__).resolve().parent)]

from alone import LONG_SPEC, with_epochs  # bench/alone.py, of this checkout
from job_servers import job_servers  # bench/job_servers.py
from trials import TINY  # bench/trials.py

import store.jobs
from settings import Settings
from store.db import make_engine, make_session_factory, transaction
from workers import (
    artifacts,
    attempt,
    initial_check,
    metrics_spool,
    mlflow_process,
    outcome,
    run,
    tracking,
)
from workers.celery_app import skip_absent_databricks_probes
from workers.heap import freeze_startup_objects

# (owner, attribute): what is timed, where run_job looks it up.
TIMED = [
    (attempt, "claim"),
    (run, "claim"),
    (attempt, "start_tracking"),
    (tracking, "start_run"),
    (store.jobs, "set_mlflow_run"),
    (run, "load_training_data"),
    (run, "build_network"),
    (initial_check, "gradient_check"),
    (run, "train"),
    (run, "final_metrics"),
    (artifacts, "save_weights"),
    (artifacts, "plot_cost_curve"),
    (mlflow_process.MlflowProcess, "log_metrics"),
    (mlflow_process.MlflowProcess, "upload"),
    (mlflow_process.MlflowProcess, "write_first_artifacts"),
    (artifacts.RunArtifacts, "finish"),
    (metrics_spool.MetricsBuffer, "close"),
    (outcome, "close_tracking"),
    (tracking, "end_run"),
    (store.jobs, "finish"),
]


class Timeline:
    """(name, start s, end s) of every timed call since ``reset()``."""

    def __init__(self):
        self.calls: list[tuple[str, float, float]] = []
        self.zero = time.perf_counter()

    def reset(self) -> None:
        self.calls, self.zero = [], time.perf_counter()

    def wrap(self, owner, name: str) -> None:
        function = getattr(owner, name)
        label = f"{owner.__name__}.{name}" if isinstance(owner, type) else name

        @functools.wraps(function)
        def timed(*a, **k):
            started = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                self.calls.append((label, started - self.zero, time.perf_counter() - self.zero))

        setattr(owner, name, timed)

    def of(self, name: str) -> tuple[float, float]:
        return next((s, e) for n, s, e in self.calls if n == name)


def main() -> None:
    skip_absent_databricks_probes()  # as the worker does
    warnings.filterwarnings("ignore", message=".*Add type hints")  # MLflow's, at every model
    timeline = Timeline()
    for owner, name in TIMED:
        timeline.wrap(owner, name)
    freeze_startup_objects()  # as the worker's processes do
    fixed: dict[str, list[float]] = {"before training": [], "after training": [], "outside": []}
    with ExitStack() as stack:
        settings = Settings(**job_servers(stack, "timeline"))
        stack.callback(lambda: mlflow_process.for_settings(settings).close())
        sessions = make_session_factory(make_engine(settings.database_url))
        base = TINY if args.tiny else LONG_SPEC
        spec = {**with_epochs(base, args.epochs), "experiment": "bench-timeline"}
        for r in range(args.repeats + 1):  # the first: a warm-up
            with transaction(sessions) as session:
                job, _ = store.jobs.create_job(
                    session, spec=spec, experiment=spec["experiment"], name=None,
                    dataset=spec["dataset"]["name"], epochs=args.epochs,
                )  # fmt: skip
            timeline.reset()
            status = run.run_job(job.id, settings, sessions, owner="bench/1")
            total = time.perf_counter() - timeline.zero
            if r == 0:
                continue
            if status != "succeeded":
                raise RuntimeError(f"job {job.id}: {status}")
            start, end = timeline.of("train")
            fixed["before training"].append(start)
            fixed["after training"].append(total - end)
            fixed["outside"].append(total - (end - start))
            if r <= args.show:
                print(f"attempt {r}: {1000 * total:.1f} ms, outside training "
                      f"{1000 * (total - (end - start)):.1f} ms")  # fmt: skip
                for name, s, e in sorted(timeline.calls, key=lambda call: call[1]):
                    print(f"  {1000 * s:8.1f} {1000 * e:8.1f} {1000 * (e - s):7.1f}  {name}")
    print(f"\n{args.repeats} attempts of {args.epochs} epochs, gradq from {args.root}")
    for name, values in fixed.items():
        each = " ".join(f"{1000 * v:.0f}" for v in values)
        print(f"{name}: median {1000 * statistics.median(values):.1f} ms ({each})")


if __name__ == "__main__":
    main()
