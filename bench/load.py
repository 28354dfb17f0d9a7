"""The load benchmark: submissions at a constant rate of half the API's saturation, on Redis +
PostgreSQL, every accepted job then run to its end by real Celery workers.

``.venv/bin/python bench/load.py --write docs/benchmarks.md`` starts the stack of
bench/bench_stack.py (an MLflow server, the API as one uvicorn process, the minimal app of
bench/minimal_app.py as the peer; Redis db 13, fresh PostgreSQL databases), then:

1. saturation: closed-loop keep-alive clients, gradq and the peer alternated, no worker running;
2. ``--count`` submissions to gradq, open loop at half gradq's saturation (latency counted
   from each request's due time), with gradq's Celery workers started just before, then the
   same count to the peer at the same rate while those workers drain gradq's jobs;
3. every 202's id looked up in SQL, and every job waited for until its status is final.

Everything is bounded by ``--timeout``; every process and database started is stopped or
dropped at the end, on failure and on Ctrl-C too.
"""
# ruff: noqa: E402  (tests/ is not installed: the repository root goes on sys.path first)

import datetime
import json
import os
import shlex
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import redis
import uvloop
from sqlalchemy import create_engine, func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_stack  # bench/bench_stack.py
from bench_stack import Bench
from core import busy_cpu_seconds  # bench/core.py
from http_load import LoadResult, load, submissions_of
from job_phases import median_phases
from latency_stats import summary_ms
from minimal_app import QUEUE, Submission
from sections import argument_parser, targets_table, write_section

from store.tables import FINAL_STATUSES, Job
from tests.servers import REDIS_URL
from workers.heap import freeze_startup_objects

# A db of its own: tests/workers 11, bench/service.py 12, tests/e2e 13, tests/service 14.
REDIS_DB = 15
JOB_SPEC = {  # a tiny job: the faces logistic regression for 2 epochs
    "experiment": "bench-load",
    "dataset": {"name": "faces"},
    "model": {"hidden_layers": [], "init": "zeros"},
    "training": {"learning_rate": 0.005, "epochs": 2},
}
SATURATION_SPEC = {**JOB_SPEC, "experiment": "bench-load-saturation"}  # never run
# No API tokens are sent, so no per-token quota applies; said explicitly for the API anyway.
API_ENV = {"GRADQ_MAX_QUEUED_JOBS_PER_TOKEN": "0"}
APPS = {"gradq": ("api", "/v1/jobs"), "minimal": ("minimal", "/submit")}
CONNECTIONS = 4  # keep-alive connections of the load generator, as bench/service.py's
ERROR_RATE_TARGET = 0.001
P99_TARGET_MS = 200.0
SERVERS = ("postgres", "redis-server")
CLEANUP_SECONDS = 45  # kept out of the drain's wait, for stopping the stack and the report


class DeadlineError(Exception):
    """--timeout passed."""


STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


# -- phases -------------------------------------------------------------------------------------


def run_load(bench: Bench, app: str, spec: dict, **how) -> LoadResult:
    server, path = APPS[app]
    url = bench.url[server]
    return uvloop.run(load(url, submissions_of(url, path, spec), CONNECTIONS, **how))


def saturation(bench: Bench, repeats: int, seconds: float) -> dict[str, list[float]]:
    """Closed-loop accepted submissions per second, gradq and the peer alternated."""
    rates: dict[str, list[float]] = {app: [] for app in APPS}
    for app in APPS:  # warm-up: connection pools, first imports
        run_load(bench, app, SATURATION_SPEC, seconds=2)
    for r in range(repeats):
        for app in list(APPS)[r % 2 :] + list(APPS)[: r % 2]:
            result = run_load(bench, app, SATURATION_SPEC, seconds=seconds)
            rates[app].append(result.rate * len(result.accepted) / max(len(result.latencies), 1))
    return rates


class CpuMeter:
    """CPU seconds used by each part of the stack between two readings."""

    def __init__(self, bench: Bench):
        self.parts = {name: process.popen.pid for name, process in bench.processes.items()}

    def read(self) -> dict[str, float]:
        out = {name: bench_stack.cpu_seconds_by(lambda s, _, pid=pid: s == pid)
               for name, pid in self.parts.items()}  # fmt: skip
        out["postgres + redis"] = bench_stack.cpu_seconds_by(lambda _, name: name in SERVERS)
        out["load generator"] = time.process_time()
        out["machine"] = busy_cpu_seconds()
        out["wall"] = time.perf_counter()
        return out

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """CPU seconds by part, "other processes" (the machine's but the benchmark's), wall."""
        spent = {name: after[name] - before[name] for name in after}
        machine = spent.pop("machine")
        ours = sum(v for name, v in spent.items() if name != "wall")
        return {**spent, "other processes": max(machine - ours, 0.0)}


def open_loop(bench: Bench, meter: CpuMeter, app: str, rate: float, count: int) -> dict:
    before = meter.read()
    result = run_load(bench, app, JOB_SPEC, rate=rate, count=count)
    cpu = CpuMeter.spent(before, meter.read())
    ids = [json.loads(body)["id"] for body in result.accepted]
    return {"result": result, "cpu": cpu, "ids": ids, "rate": rate}


def renice(group: int, nice: int) -> bool:
    """Set the nice value of a process group (the worker and its pool); False if not allowed."""
    try:
        os.setpriority(os.PRIO_PGRP, group, nice)
    except PermissionError:
        return False
    return True


def ids_in_sql(url: str, table, ids: list[str]) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.scalars(select(table.id).where(table.id.in_(ids))))
    finally:
        engine.dispose()


def statuses(connection, ids: list[str]) -> dict[str, int]:
    query = select(Job.status, func.count()).where(Job.id.in_(ids)).group_by(Job.status)
    return dict(connection.execute(query).all())


def wait_final(bench: Bench, ids: list[str], until: float, poll: float = 1.0) -> dict:
    """Poll the jobs' statuses until every one is final or ``until`` (perf_counter) passes."""
    engine = create_engine(bench.jobs_db)
    started = time.perf_counter()
    try:
        with engine.connect() as connection:
            while True:
                counts = statuses(connection, ids)
                connection.rollback()  # a fresh snapshot at the next poll
                final = sum(n for status, n in counts.items() if status in FINAL_STATUSES)
                if final == len(ids) or time.perf_counter() >= until:
                    break
                time.sleep(poll)
            spans = connection.execute(
                select(func.min(Job.created_at), func.max(Job.finished_at),
                       func.percentile_cont(0.5).within_group(
                           func.extract("epoch", Job.finished_at - Job.started_at)))
                .where(Job.id.in_(ids), Job.finished_at.is_not(None))
            ).one()  # fmt: skip
    finally:
        engine.dispose()
    first, last, run = spans
    return {"counts": counts, "final": final, "waited": time.perf_counter() - started,
            "span": (last - first).total_seconds() if first and last else float("nan"),
            "run_median": float(run) if run is not None else float("nan")}  # fmt: skip


def warm_workers(bench: Bench, until: float) -> None:
    """Two jobs run to their end: the workers' imports, the dataset, MLflow's experiment."""
    with httpx.Client(base_url=bench.url["api"], timeout=30) as api:
        ids = [api.post("/v1/jobs", json=JOB_SPEC).raise_for_status().json()["id"]
               for _ in range(2)]  # fmt: skip
    wait_final(bench, ids, until, poll=0.2)


# -- the run --------------------------------------------------------------------------------------


def measure(args, stack: ExitStack, deadline: float) -> dict:
    home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gradq-load-")))
    if keys := redis.Redis.from_url(f"{REDIS_URL}/{args.redis_db}").dbsize():
        raise RuntimeError(f"Redis db {args.redis_db} holds {keys} keys: in use? --redis-db")
    progress("starting the servers")
    bench = bench_stack.start_servers(stack, home, args.redis_db, api_env=API_ENV)
    stack.callback(progress, "stopping the servers, dropping the databases")
    out: dict = {"machine": bench_stack.machine(bench)}
    progress("saturation")
    out["saturation"] = saturation(bench, args.repeats, args.seconds)
    rate = statistics.median(out["saturation"]["gradq"]) / 2
    out["saturation_left_queued"] = redis.Redis.from_url(bench.broker).llen("celery")
    bench_stack.flush_redis(bench.broker)  # the saturation's messages: nobody is to run those jobs
    progress("starting the workers")
    bench_stack.start_workers(bench, args.worker_concurrency, baseline=False, nice=args.worker_nice)
    warm_workers(bench, min(deadline, time.perf_counter() + 120))
    meter = CpuMeter(bench)
    progress(f"{args.count} submissions to gradq, then to the peer, at {rate:.0f}/s")
    out["gradq"] = open_loop(bench, meter, "gradq", rate, args.count)
    out["minimal"] = open_loop(bench, meter, "minimal", rate, args.count)
    out["peer_messages"] = redis.Redis.from_url(bench.broker).llen(QUEUE)
    out["reniced"] = renice(bench.processes["worker"].popen.pid, 0)
    out["missing"] = {
        "gradq": set(out["gradq"]["ids"]) - ids_in_sql(bench.jobs_db, Job, out["gradq"]["ids"]),
        "minimal": set(out["minimal"]["ids"])
        - ids_in_sql(bench.minimal_db, Submission, out["minimal"]["ids"]),
    }
    progress("waiting for every job to end")
    before = meter.read()
    out["drain"] = wait_final(bench, out["gradq"]["ids"], deadline - CLEANUP_SECONDS)
    out["drain"]["cpu"] = CpuMeter.spent(before, meter.read())
    out["phases"] = median_phases(bench.processes["worker"].log_text(), out["gradq"]["ids"])
    return out


# -- the report -----------------------------------------------------------------------------------


def verdict(name: str, measured: str, required: str, ok: bool) -> str:
    return f"| {name} | {measured} | {required} | {'PASS' if ok else '**FAIL**'} |"


def latency_line(app: str, run: dict) -> str:
    result: LoadResult = run["result"]
    ms = summary_ms(result.latencies) if result.latencies else {}
    cells = " | ".join(f"{ms.get(k, float('nan')):.1f}" for k in ("p50", "p95", "p99", "max"))
    return (f"| {app} | {run['rate']:.0f} | {result.sent:,} | {len(result.accepted):,} | "
            f"{result.errors / max(result.sent, 1):.2%} | {cells} |")  # fmt: skip


def cpu_table(out: dict) -> list[str]:
    """CPU seconds per part of the stack and its share of the machine, per phase."""
    phases = {"gradq's submissions": out["gradq"]["cpu"],
              "the peer's submissions": out["minimal"]["cpu"],
              "the drain, after them": out["drain"]["cpu"]}  # fmt: skip
    parts = [name for name in next(iter(phases.values())) if name != "wall"]
    head = "| part | " + " | ".join(f"{phase}: CPU s (share)" for phase in phases) + " |"
    rows = [f"| {part} | " + " | ".join(
        f"{cpu[part]:.1f} ({share(cpu, part):.0%})" for cpu in phases.values())
        + " |" for part in parts]  # fmt: skip
    walls = " | ".join(f"{cpu['wall']:.1f}" for cpu in phases.values())
    return [head, "|---|" + "---:|" * len(phases), *rows, f"| wall seconds | {walls} |"]


def share(cpu: dict[str, float], part: str) -> float:
    """The part's CPU seconds over the machine's CPU seconds in the same wall time."""
    return cpu[part] / (cpu["wall"] * len(os.sched_getaffinity(0)))


def report(args, out: dict, seconds: float) -> tuple[str, bool]:
    sat = {app: statistics.median(rates) for app, rates in out["saturation"].items()}
    gradq, peer, drain = out["gradq"], out["minimal"], out["drain"]
    accepted, errors = len(gradq["ids"]), gradq["result"].errors
    error_rate = errors / max(gradq["result"].sent, 1)
    p99 = {app: summary_ms(out[app]["result"].latencies)["p99"] for app in APPS}
    succeeded = drain["counts"].get("succeeded", 0)
    per_request = {app: 1000 * out[app]["cpu"][server] / max(out[app]["result"].sent, 1)
                   for app, (server, _) in APPS.items()}  # fmt: skip
    others = {name: share(out[name]["cpu"], "other processes") for name in ("gradq", "drain")}
    phases = [gradq["cpu"], peer["cpu"], drain["cpu"]]
    # Jobs ran during all three phases: their CPU over the jobs that ended, the warm-up's aside.
    per_job = {part: 1000 * sum(cpu[part] for cpu in phases) / max(drain["final"], 1)
               for part in ("worker", "mlflow", "postgres + redis")}  # fmt: skip
    targets = [
        verdict("error rate of gradq's submissions", f"{error_rate:.2%} ({errors})", "< 0.1 %",
                error_rate < ERROR_RATE_TARGET),
        verdict("p99 latency of gradq's submissions", f"{p99['gradq']:.1f} ms",
                f"< {P99_TARGET_MS:g} ms", p99["gradq"] < P99_TARGET_MS),
        verdict("every 202 has its job row in SQL", f"{len(out['missing']['gradq'])} missing",
                "0 missing", not out["missing"]["gradq"] and accepted == len(set(gradq["ids"]))),
        verdict("every accepted job reaches a final status", f"{drain['final']:,} of {accepted:,}",
                f"all, within --timeout {args.timeout:g} s", drain["final"] == accepted),
    ]  # fmt: skip
    passed = all(line.endswith("| PASS |") for line in targets)
    outcome = ", ".join(f"{status} {n:,}" for status, n in sorted(drain["counts"].items()))
    lines = [
        "## Load: submissions at half the saturation, every job run (Redis + PostgreSQL)", "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Command: `.venv/bin/python bench/load.py {shlex.join(sys.argv[1:])}` (`make bench` "
        "runs it with `--write docs/benchmarks.md`)", *out["machine"],
        "- Started by the benchmark (bench/bench_stack.py, the commands of `service/stack.py`): "
        "`mlflow server --workers 1` on a PostgreSQL store, the API as one uvicorn process, "
        "the peer (bench/minimal_app.py: a FastAPI endpoint that inserts one row through "
        "SQLAlchemy and calls Celery's `send_task`, as gradq's route does at the least) as "
        f"another, gradq's Celery worker `--pool prefork --concurrency "
        f"{args.worker_concurrency}` under `nice -n {args.worker_nice}` while the submissions "
        f"are sent, then {'0' if out['reniced'] else 'still (renice refused)'}; jobs in "
        f"PostgreSQL, Redis db {args.redis_db}. Client, servers and workers share the "
        "machine's cores; no API token is sent. The niced worker: the saturation is the API's "
        "with the cores to itself, and at half of it the workers train with what the API "
        "leaves, as on hosts of their own (`--worker-nice 0`: the same priority).", "",
        "### Saturation", "",
        f"Closed loop, no worker running: {CONNECTIONS} keep-alive connections, each sending "
        f"its next request as soon as it has the answer, {args.seconds:g} s a repeat, gradq "
        "and the peer alternated; accepted (202) submissions per second. Half the requests "
        "carry a fresh Idempotency-Key.", "",
        "| endpoint | accepted/s per repeat | median |", "|---|---|---:|",
        *(f"| {app} | {', '.join(f'{r:.0f}' for r in rates)} | {sat[app]:.0f} |"
          for app, rates in out["saturation"].items()),
        "", f"gradq ÷ peer: {sat['gradq'] / sat['minimal']:.2f}.", "",
        "### Constant rate", "",
        f"{args.count:,} submissions (POST, a faces logistic regression of "
        f"{JOB_SPEC['training']['epochs']} epochs) to each, open loop at half gradq's "
        f"saturation, {CONNECTIONS} keep-alive connections; request i is due at start + "
        "i/rate and its latency counts from then (as wrk2 does), so queueing shows in every "
        "request it delays. gradq first, its workers started just before; then the peer, at "
        "the same rate, while those workers drain gradq's jobs (the same machine load). "
        "Errors: answers other than 202 and requests without an answer in "
        "10 s. Percentiles by nearest rank.", "",
        "| endpoint | rate/s | sent | 202 | errors | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        latency_line("gradq", gradq), latency_line("peer", peer), "",
        f"p99, gradq ÷ peer: {p99['gradq'] / p99['minimal']:.2f}. Every 202's id looked up "
        f"afterwards: gradq's in `jobs` ({len(out['missing']['gradq'])} missing), the peer's "
        f"in its table ({len(out['missing']['minimal'])} missing).", "",
        "### Every job run", "",
        f"gradq's {accepted:,} accepted jobs, polled in SQL until final: {outcome} "
        f"({succeeded:,} succeeded) after {drain['waited']:.0f} s of waiting past the "
        f"submissions; first created → last finished {drain['span']:.0f} s, "
        f"{drain['final'] / drain['span']:.1f} jobs/s. A job ran (started → finished) "
        f"{1000 * drain['run_median']:.0f} ms, median. The peer's "
        f"{out['peer_messages']:,} messages were left unconsumed (no worker runs its tasks) "
        "and flushed.", "",
        "### Where the time goes", "",
        "CPU seconds of each part while it ran (the API, the peer, the MLflow server and the "
        "worker with its pool children, each by its session; PostgreSQL and Redis by process "
        "name), and its share of the machine's CPU time:", "",
        *cpu_table(out), "",
        "A job's attempt by the worker's log line (`run_job`'s phases), median ms: "
        + ", ".join(f"{name} {ms:.0f}" for name, ms in out["phases"].items()) + ".", "",
        f"Processes not the benchmark's took {others['gradq']:.0%} of the machine's CPU time "
        f"during gradq's submissions and {others['drain']:.0%} during the drain. A submission "
        f"cost gradq's API {per_request['gradq']:.2f} ms of CPU, the peer "
        f"{per_request['minimal']:.2f} ms. A job that ended cost "
        + ", ".join(f"{part} {ms:.0f} ms" for part, ms in per_job.items())
        + " of CPU (the three phases' CPU over the jobs that ended).",
        "", *targets_table(targets),
        f"The saturation's {out['saturation_left_queued']:,} messages to gradq's workers were "
        "flushed before those started: their rows stay queued, never run. Benchmark time: "
        f"{seconds:.0f} s.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n", passed


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--count", type=int, default=2000, help="submissions at constant rate")
    parser.add_argument("--repeats", type=int, default=3, help="closed-loop repeats")
    parser.add_argument("--seconds", type=float, default=4, help="closed-loop seconds a repeat")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    # The saturation is the API's with the cores to itself; at the constant rate, training
    # takes what the API leaves, as on separate hosts. 0: the same priority.
    parser.add_argument("--worker-nice", type=int, default=10,
                        help="the worker's nice value while submissions are sent")  # fmt: skip
    parser.add_argument("--redis-db", type=int, default=REDIS_DB)
    # The drain of 2,000 jobs takes minutes: MLflow's artifacts cost each job ~0.5 s of CPU.
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the whole run")
    args = parser.parse_args()
    # Ctrl-C, SIGTERM and the alarm of --timeout unwind the ExitStack, which stops every
    # process started and drops the databases.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    def timed_out(*_):
        raise DeadlineError(f"--timeout {args.timeout:g} s passed")

    signal.signal(signal.SIGALRM, timed_out)
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    freeze_startup_objects()  # a full collection here stalls the load generator
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            out = measure(args, stack, started + args.timeout)
            progress("measured")
            signal.setitimer(signal.ITIMER_REAL, 0)  # stopping the stack is bounded on its own
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    progress("stopped")
    section, passed = report(args, out, time.perf_counter() - started)
    print(section)
    print("load targets:", "PASS" if passed else "FAIL")
    if args.write:
        write_section(args.write, "load", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
