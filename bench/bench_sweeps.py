"""What the sweep benchmarks share: a stack with one worker, and a sweep sent through the API
and waited for, its trials read back from SQL."""

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import bench_stack  # bench/bench_stack.py
import httpx
from sections import argument_parser, publish
from sqlalchemy import Engine, create_engine, select

from store.tables import FINAL_STATUSES, Job


@dataclass
class SweepStack:
    api: httpx.Client
    sql: Engine
    bench: bench_stack.Bench

    def run(self, request: dict, timeout: float) -> tuple[dict, list]:
        """Send the sweep, wait until every trial has ended; (the sweep, its trials' rows)."""
        sweep = self.api.post("/v1/sweeps", json=request).raise_for_status().json()
        deadline = time.monotonic() + timeout
        while (done := self.api.get(f"/v1/sweeps/{sweep['id']}").json())["status"] not in (
            FINAL_STATUSES
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep['id']} not over in {timeout:g} s")
            time.sleep(0.5)
        with self.sql.connect() as connection:
            trials = connection.execute(select(Job).where(Job.sweep_id == sweep["id"])).all()
        return done, trials


@contextmanager
def sweep_stack(name: str, redis_db: int) -> Iterator[SweepStack]:
    """The stack of bench/bench_stack.py with one Celery worker of concurrency 1."""
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"gradq-{name}-")))
        bench = bench_stack.start_servers(stack, home, redis_db)
        bench_stack.start_workers(bench, concurrency=1, baseline=False)
        api = stack.enter_context(httpx.Client(base_url=bench.url["api"], timeout=30))
        sql = create_engine(bench.jobs_db)
        stack.callback(sql.dispose)
        yield SweepStack(api, sql, bench)


def span(trials: list) -> float:
    """Seconds from the first trial's claim to the last one's end."""
    return (max(t.finished_at for t in trials) - min(t.started_at for t in trials)).total_seconds()


def sweep_parser(doc: str, redis_db: int, timeout: float) -> argparse.ArgumentParser:
    """A sweep benchmark's command line: --write, --redis-db and --timeout (a sweep's)."""
    parser = argument_parser(doc)
    parser.add_argument("--redis-db", type=int, default=redis_db)
    parser.add_argument("--timeout", type=float, default=timeout, help="seconds for each sweep")
    return parser


def run_benchmark(args, measure, report, name: str) -> int:
    """measure(args), then report(args, out, seconds) -> (section, passed), published."""
    started = time.perf_counter()
    out = measure(args)
    section, passed = report(args, out, time.perf_counter() - started)
    publish(section, args.write, name)
    print(f"{name} targets:", "PASS" if passed else "FAIL")
    return 0
