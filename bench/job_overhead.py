"""What the worker adds to a job's training, in one process, variants interleaved.

``.venv/bin/python bench/job_overhead.py [--repeats 7] [--variant NAME=JSON ...]`` runs the
long job of bench/service.py (digits, [64, 32], ~5.5 s of training) again and again in this
process: ``train_alone`` (the baseline), and ``workers.run.run_job`` on a job row of a new
PostgreSQL database with a real ``mlflow server`` (PostgreSQL store), once per variant, in an
order rotated every repeat. It prints, per variant, the medians of the attempt's time and of
its training phase, each divided by the same repeat's training alone, of every phase, of
the attempt's time outside training (the fixed cost: far less noisy than any ratio), and of
the time Python's garbage collector took.

A variant is settings and spec changes as JSON, ``{"settings": {...}, "training": {...}}``;
``job`` (no change) is always run. Example: what checkpoints cost the training phase:
``--variant 'no-checkpoints={"training": {"checkpoint_every": 1000000}}'``.

bench/service.py measures the same job through the API and a Celery worker, where the
machine's noise between repeats (±5-10 %) hides a 1-2 % effect; here the HTTP, queue and
process hops are gone and the variants alternate within seconds of each other.
"""
# ruff: noqa: E402  (tests/ is not installed: the repository root goes on sys.path first)

import argparse
import gc
import json
import logging
import statistics
import sys
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alone import LONG_SPEC, TRAIN_SECONDS, epochs_for, train_alone, with_epochs  # bench/alone.py
from job_servers import job_servers  # bench/job_servers.py

import store.jobs
from contract.spec import JobSpec
from settings import Settings
from store.db import make_engine, make_session_factory, transaction
from workers import mlflow_process
from workers.celery_app import skip_absent_databricks_probes
from workers.heap import freeze_startup_objects
from workers.run import run_job

BASELINE = "alone"


class LastPhases(logging.Handler):
    """Keeps the phases (workers.attempt.Phases) of run_job's last closing log line."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("job %s %s in %.3f s"):
            self.seconds = dict(record.args[-1].seconds)


class GcClock:
    """Seconds spent in Python's cyclic garbage collector, and its full collections, since
    ``reset()``: with MLflow, SQLAlchemy and Celery imported, a full collection walked ~270,000
    objects in ~0.17 s here."""

    def __init__(self):
        self.seconds, self.full, self._started = 0.0, 0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        self.full += info["generation"] == 2

    def reset(self) -> None:
        self.seconds, self.full = 0.0, 0

    def read(self) -> dict:
        return {"gc": self.seconds, "full gc": self.full}


def run_variant(spec: dict, settings: Settings, sessions, phases: LastPhases) -> dict:
    """One attempt at a new job of ``spec``: its status, seconds and phases."""
    with transaction(sessions) as session:
        job, _ = store.jobs.create_job(session, spec=spec, experiment=spec["experiment"],
                                       name=None, dataset=spec["dataset"]["name"],
                                       epochs=spec["training"]["epochs"])  # fmt: skip
    started = time.perf_counter()
    status = run_job(job.id, settings, sessions, owner="bench/1")
    seconds = time.perf_counter() - started
    return {"status": status, "seconds": seconds, **phases.seconds,
            "outside training": seconds - phases.seconds["training"]}  # fmt: skip


def parse_variant(text_: str) -> tuple[str, dict]:
    name, _, changes = text_.partition("=")
    parsed = json.loads(changes or "{}")
    unknown = set(parsed) - {"settings", "training"}
    if not name or name == BASELINE or unknown:
        raise argparse.ArgumentTypeError(f"{text_!r}: NAME=JSON with settings/training only")
    return name, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[])
    args = parser.parse_args()
    variants = {"job": {}, **dict(args.variant)}
    logging.basicConfig(level=logging.WARNING)
    skip_absent_databricks_probes()  # as the worker does
    phases = LastPhases()
    logging.getLogger("workers.run").setLevel(logging.INFO)
    logging.getLogger("workers.run").addHandler(phases)
    logging.getLogger("workers.run").propagate = False  # its closing lines: in the report
    warnings.filterwarnings("ignore", message=".*Add type hints")  # MLflow's, at every model
    freeze_startup_objects()  # as the worker's processes do (workers/heap.py)
    with ExitStack() as stack:
        base = job_servers(stack, "overhead")
        settings = {n: Settings(**base, **v.get("settings", {})) for n, v in variants.items()}
        stack.callback(lambda: mlflow_process.for_settings(settings["job"]).close())
        sessions = make_session_factory(make_engine(base["database_url"]))
        epochs, _ = epochs_for(TRAIN_SECONDS, sessions)
        spec = {**with_epochs(LONG_SPEC, epochs), "experiment": "bench-overhead"}
        specs = {n: {**spec, "training": {**spec["training"], **v.get("training", {})}}
                 for n, v in variants.items()}  # fmt: skip
        run_variant(with_epochs(spec, 1), settings["job"], sessions, phases)  # warm-up
        names = [BASELINE, *variants]
        results: dict[str, list[dict]] = {name: [] for name in names}
        clock = GcClock()
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                clock.reset()
                if name == BASELINE:
                    seconds = train_alone(JobSpec.model_validate(spec), sessions)
                    found = {"status": "-", "seconds": seconds}
                else:
                    found = run_variant(specs[name], settings[name], sessions, phases)
                results[name].append({**found, **clock.read()})
            print(f"repeat {r + 1}: " + ", ".join(
                f"{n} {results[n][-1]['seconds']:.3f} s" for n in names), flush=True)  # fmt: skip
    report(results, epochs, args.repeats, variants)


def report(results: dict[str, list[dict]], epochs: int, repeats: int, variants: dict) -> None:
    alone = [row["seconds"] for row in results[BASELINE]]
    print(f"\n{epochs} epochs, {repeats} repeats; training alone: median "
          f"{statistics.median(alone):.3f} s\n")  # fmt: skip
    gc_alone = [row["gc"] for row in results[BASELINE]]
    print(
        f"The collector during training alone: median {1000 * statistics.median(gc_alone):.0f} "
        f"ms, full collections {sum(row['full gc'] for row in results[BASELINE])}\n"
    )
    print("| variant | changes | statuses | attempt ÷ alone | training ÷ alone | medians, ms |")
    print("|---|---|---|---:|---:|---|")
    for name, changes in variants.items():
        rows = results[name]
        keys = [k for k in rows[0] if k not in ("status", "seconds", "full gc")]
        phases = ", ".join(f"{k} {1000 * statistics.median(r[k] for r in rows):.0f}" for k in keys)
        phases += f"; full collections {sum(row['full gc'] for row in rows)}"
        statuses = ",".join(sorted({str(row["status"]) for row in rows}))
        attempt, training = (ratio(rows, key, alone) for key in ("seconds", "training"))
        print(f"| {name} | `{json.dumps(changes)}` | {statuses} | {attempt:.4f} | "
              f"{training:.4f} | {phases} |")  # fmt: skip


def ratio(rows: list[dict], key: str, alone: list[float]) -> float:
    """The median over repeats of row[key] ÷ the same repeat's training alone."""
    return statistics.median(row[key] / a for row, a in zip(rows, alone, strict=True))


if __name__ == "__main__":
    main()
