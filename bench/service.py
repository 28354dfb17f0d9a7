"""The service benchmark: submissions, queue latency and tracking cost on Redis + PostgreSQL.

``.venv/bin/python bench/service.py --write docs/benchmarks.md`` starts, in one run, the
commands of service/stack.py (``mlflow server --workers 1`` on a PostgreSQL store, the API as
one uvicorn process, a prefork Celery worker of concurrency 1) and the baselines of
bench/minimal_app.py, on the local PostgreSQL (databases of its own, dropped at the end) and
Redis (db 12, flushed at the start and the end). Each target is measured against a peer in the
same run, repeats alternated; every process started is stopped, even on failure.
"""
# ruff: noqa: E402  (tests/ is not installed: the repository root goes on sys.path first)

import datetime
import json
import math
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np
import redis
import uvloop
from scipy import stats
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import minimal_app  # bench/minimal_app.py
from alone import LONG_SPEC, TRAIN_SECONDS, epochs_for, train_alone, with_epochs  # bench/alone.py
from bench_stack import (
    Bench,
    cpu_seconds_by,
    flush_redis,
    machine,
    start_servers,
    start_workers,
)
from core import busy_cpu_seconds  # bench/core.py
from http_load import load, submissions_of
from sections import argument_parser, publish, targets_table

from contract.spec import JobSpec
from settings import Settings
from store.db import make_engine, make_session_factory, transaction
from store.tables import FINAL_STATUSES, Job, JobEvent
from workers import metrics_spool
from workers.heap import freeze_startup_objects

REDIS_DB = 12
SUBMIT_SPEC = {  # a valid faces logistic regression, as in DESIGN.md section 4
    "experiment": "bench-submit",
    "dataset": {"name": "faces"},
    "model": {"hidden_layers": [], "init": "zeros"},
    "training": {"learning_rate": 0.005, "epochs": 100},
}
CONNECTIONS = 4  # keep-alive connections of the load generator (1 to 16 gave the same rates)
IDLE_PAUSE = 0.02  # after a job or task ends and before the next: the worker is idle again
POLL = 0.01  # seconds between two reads of a tiny job's row
SERVERS = ("postgres", "redis-server")  # shared servers, counted apart from other processes
PACKAGES = ("fastapi", "uvicorn", "celery", "sqlalchemy", "mlflow")
CONFIDENCE = 0.9  # of the interval given for the long job's median ratio


@contextmanager
def cpu_shares(bench: Bench, out: dict) -> Iterator[None]:
    """Sets out["servers"], out["others"]: the shares of the machine's CPU time used meanwhile
    by PostgreSQL + Redis, and by every process that is neither those nor this one nor one it
    started (each of those leads a session of its own)."""
    sessions = {p.popen.pid for p in bench.processes.values()}
    servers = lambda: cpu_seconds_by(lambda _, name: name in SERVERS)  # noqa: E731

    # This process, the children it waited for (the metrics loads), and the servers it started.
    def ours() -> float:
        children = os.times().children_user + os.times().children_system
        return time.process_time() + children + cpu_seconds_by(lambda s, _: s in sessions)

    now = lambda: (time.perf_counter(), busy_cpu_seconds(), servers(), ours())  # noqa: E731
    before = now()
    yield
    wall, busy, server, own = (b - a for a, b in zip(before, now(), strict=True))
    out["servers"] = server / (wall * os.cpu_count())
    out["others"] = max(busy - server - own, 0.0) / (wall * os.cpu_count())


# -- submissions ------------------------------------------------------------------------------


def submissions(bench: Bench, repeats: int, seconds: float) -> dict:
    """Closed-loop rates (and CPU per request of the app and of PostgreSQL), alternated; then
    open-loop latencies at half the minimal's rate and at half gradq's own."""
    apps = {"gradq": (bench.url["api"], "/v1/jobs"), "minimal": (bench.url["minimal"], "/submit")}
    out: dict = {"seconds": seconds, "open": {}, "client": [0.0, 0], "errors": 0}
    out.update({key: {name: [] for name in apps} for key in ("rate", "app_cpu", "pg_cpu")})
    postgres = lambda: cpu_seconds_by(lambda _, name: name == "postgres")  # noqa: E731

    def measure(name: str, duration: float, rate=None, keep=True) -> list[float]:
        pid = bench.processes["api" if name == "gradq" else "minimal"].popen.pid
        app = lambda: cpu_seconds_by(lambda session, _: session == pid)  # noqa: E731
        before = time.process_time(), app(), postgres()
        requests = submissions_of(*apps[name], SUBMIT_SPEC)
        result = uvloop.run(load(apps[name][0], requests, CONNECTIONS, duration, rate))
        achieved, latencies, errors = result.rate, result.latencies, result.errors
        after = time.process_time(), app(), postgres()
        client, app_cpu, pg_cpu = (b - a for a, b in zip(before, after, strict=True))
        out["client"] = [out["client"][0] + client, out["client"][1] + len(latencies)]
        out["errors"] += errors
        if keep and rate is None:
            out["rate"][name].append(achieved)
            out["app_cpu"][name].append(app_cpu / len(latencies))
            out["pg_cpu"][name].append(pg_cpu / len(latencies))
        return latencies

    with cpu_shares(bench, out):
        for name in apps:  # warm-up: connection pools, first imports
            measure(name, 2, keep=False)
        for r in range(repeats):
            for name in rotated(list(apps), r):
                measure(name, seconds)
        rate = {name: statistics.median(rates) for name, rates in out["rate"].items()}
        for name, at in [("gradq", rate["minimal"] / 2), ("minimal", rate["minimal"] / 2),
                         ("gradq", rate["gradq"] / 2)]:  # fmt: skip
            out["open"][name, at] = measure(name, 2 * seconds, at)
    out["queued_messages"] = redis.Redis.from_url(bench.broker).llen("celery")
    return out


def rotated(items: list, r: int) -> list:
    return items[r % len(items) :] + items[: r % len(items)]


# -- jobs, one at a time ------------------------------------------------------------------------


def one_job(api: httpx.Client, sessions, spec: dict, poll: float) -> dict:
    """Submit ``spec`` and read its row every ``poll`` s until final. Its status and times in
    Unix seconds: sent, 202 (received), created, dispatched, claimed, finished."""
    sent = time.time()
    job_id = api.post("/v1/jobs", json=spec).raise_for_status().json()["id"]
    times = {"sent": sent, "202": time.time()}
    while True:
        with sessions() as session:
            job = session.get(Job, job_id)
            if job.status in FINAL_STATUSES:
                claimed = session.scalar(
                    select(JobEvent.at)
                    .where(JobEvent.job_id == job_id, JobEvent.to_status == "running")
                    .order_by(JobEvent.id)
                    .limit(1)
                )
                break
        time.sleep(poll)
    at = {"created": job.created_at, "dispatched": job.dispatched_at, "claimed": claimed,
          "finished": job.finished_at}  # fmt: skip
    times.update((key, value.timestamp() if value else math.nan) for key, value in at.items())
    return {"id": job_id, "status": job.status, **times}


def one_task(client, store: redis.Redis) -> float:
    """Publish the trivial task and wait until it starts: publish → start, in seconds."""
    client.send_task(minimal_app.TASK, args=[time.time()])
    _, raw = store.blpop(minimal_app.STARTS_KEY, timeout=30)
    sent_at, started = json.loads(raw)
    return started - sent_at


QUEUE_FROM = {"dispatched": "dispatched_at → claimed", "202": "202 received → claimed",
              "created": "created_at → claimed"}  # fmt: skip


def queue_latency(bench: Bench, jobs: int) -> dict:
    """Tiny jobs (faces, 1..10 epochs) one at a time, each after the last ended, alternated
    with the baseline's trivial task."""
    api = httpx.Client(base_url=bench.url["api"], timeout=30)
    sessions = make_session_factory(make_engine(bench.jobs_db))
    client, store = minimal_app.make_celery(bench.broker), redis.Redis.from_url(bench.broker)
    spec = lambda i: {**with_epochs(SUBMIT_SPEC, i % 10 + 1), "experiment": "bench-queue"}  # noqa: E731
    out: dict = {"baseline": [], "run": [], "statuses": [], **{key: [] for key in QUEUE_FROM}}
    for i in range(3):  # warm-up: the worker's imports, MLflow's experiment, connections
        one_job(api, sessions, spec(i), POLL), one_task(client, store)
    with cpu_shares(bench, out):
        for i in range(jobs):
            time.sleep(IDLE_PAUSE)
            job = one_job(api, sessions, spec(i), POLL)
            out["statuses"].append(job["status"])
            for key in QUEUE_FROM:
                out[key].append(job["claimed"] - job[key])
            out["run"].append(job["finished"] - job["claimed"])
            time.sleep(IDLE_PAUSE)
            out["baseline"].append(one_task(client, store))
    return out


# -- tracking -----------------------------------------------------------------------------------


class TimedCallbacks:
    """The worker's two callbacks, called as the training loop calls them, each epoch's pair
    of calls timed. Heartbeats are written by Heartbeat's own thread, not in these calls."""

    def __init__(self, buffer, progress):
        self.buffer, self.progress, self.plain = buffer, progress, []

    def on_epoch_end(self, epoch: int, metrics) -> None:
        started = time.perf_counter()
        self.buffer.on_epoch_end(epoch, metrics)
        self.progress.on_epoch_end(epoch, metrics)
        self.plain.append(time.perf_counter() - started)


def tracked_callbacks(bench: Bench, sessions, settings: Settings, epochs: int) -> TimedCallbacks:
    """The callbacks run_job gives train: a MetricsBuffer on a new MLflow run, and a Heartbeat
    on a new job row claimed by this process."""
    from mlflow.tracking import MlflowClient

    import store.jobs
    from workers import tracking
    from workers.heartbeat import Heartbeat

    with transaction(sessions) as session:
        job, _ = store.jobs.create_job(session, spec=SUBMIT_SPEC, experiment="bench-callbacks",
                                       name=None, dataset="faces", epochs=epochs)  # fmt: skip
    with transaction(sessions) as session:
        store.jobs.claim(session, job.id, "bench", settings.lease_seconds)
    client = MlflowClient(bench.url["mlflow"])
    run = tracking.start_run(client, experiment="bench-callbacks", run_name=job.id, tags={})
    buffer = metrics_spool.MetricsBuffer(client, run.run_id, settings.metrics_flush_seconds)
    return TimedCallbacks(buffer, Heartbeat(sessions, job.id, "bench", settings).start())


def callback_cost(bench: Bench, epochs: int, repeats: int) -> dict:
    """SUBMIT_SPEC's training for ``epochs`` epochs in this process, without and with the
    worker's callbacks (on the MLflow server and a PostgreSQL row), alternated."""
    settings = Settings(database_url=bench.jobs_db, mlflow_tracking_uri=bench.url["mlflow"])
    sessions = make_session_factory(make_engine(bench.jobs_db))
    spec = JobSpec.model_validate(with_epochs(SUBMIT_SPEC, epochs))
    out: dict = {"epochs": epochs, "without": [], "with": [], "plain": [], "close": []}
    for r in range(repeats):
        for kind in rotated(["without", "with"], r):
            timed = tracked_callbacks(bench, sessions, settings, epochs) if kind == "with" else None
            out[kind].append(train_alone(spec, sessions, [timed] if timed else []))
            if timed:
                started = time.perf_counter()
                timed.buffer.close()  # the metrics not sent yet: the job's "mlflow end" phase
                out["close"].append(time.perf_counter() - started)
                timed.progress.close()
                out["plain"] += timed.plain
    return out


class MetricNames:
    """A training callback that keeps the names of the metrics of the last epoch."""

    def __init__(self):
        self.names: list[str] = []

    def on_epoch_end(self, epoch: int, metrics) -> None:
        self.names = list(metrics)


def train_beside_metrics_load(bench: Bench, spec: JobSpec, sessions, keys, per_epoch) -> float:
    """train_alone, while another process (bench/metrics_load.py) sends the job's metrics to
    the MLflow server at the pace training makes them: the server's work without the
    worker's."""
    command = [sys.executable, str(ROOT / "bench" / "metrics_load.py"), bench.url["mlflow"],
               "--epochs", str(spec.training.epochs), "--seconds-per-epoch", f"{per_epoch:.6f}",
               "--keys", ",".join(keys)]  # fmt: skip
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, **bench.env}) as load:  # fmt: skip
        if load.stdout.readline().strip() != "ready":
            raise RuntimeError("bench/metrics_load.py did not start")
        load.stdin.write("go\n")
        load.stdin.flush()
        seconds = train_alone(spec, sessions)
        load.stdin.close()
        if load.wait(timeout=120) != 0:
            raise RuntimeError("bench/metrics_load.py failed")
    return seconds


def tracking_overhead(bench: Bench, repeats: int) -> dict:
    """The long job in this process (training alone), the same beside its metrics sent to
    MLflow by another process, and through API + worker + MLflow, alternated, after a 1-epoch
    job that has the worker load the dataset."""
    api = httpx.Client(base_url=bench.url["api"], timeout=30)
    sessions = make_session_factory(make_engine(bench.jobs_db))
    epochs, per_epoch = epochs_for(TRAIN_SECONDS, sessions)
    spec = with_epochs(LONG_SPEC, epochs)
    names = MetricNames()  # what the worker sends each epoch, from one epoch of the job
    train_alone(JobSpec.model_validate(with_epochs(LONG_SPEC, 1)), sessions, [names])
    keys = names.names
    warm = one_job(api, sessions, with_epochs(spec, 1), POLL)
    out: dict = {"spec": spec, "without": [], "beside": [], "with": [], "to_claim": [], "lines": [],
                 "statuses": [], "first": worker_line(bench, warm["id"])}  # fmt: skip
    with cpu_shares(bench, out):
        for r in range(repeats):
            for kind in rotated(["without", "beside", "with"], r):
                if kind == "without":
                    out["without"].append(train_alone(JobSpec.model_validate(spec), sessions))
                elif kind == "beside":
                    job_spec = JobSpec.model_validate(spec)
                    seconds = train_beside_metrics_load(bench, job_spec, sessions, keys, per_epoch)
                    out["beside"].append(seconds)
                else:
                    job = one_job(api, sessions, spec, poll=0.25)  # seldom: the CPU is busy
                    out["with"].append(job["finished"] - job["sent"])
                    out["to_claim"].append(job["claimed"] - job["sent"])
                    out["statuses"].append(job["status"])
                    out["lines"].append(worker_line(bench, job["id"]))
    return out


def worker_line(bench: Bench, job_id: str) -> str:
    """run_job's log line for the job: its outcome, seconds and phase timings."""
    for _ in range(50):  # written just after the row turned final
        found = re.findall(rf"job {job_id} (\w+ in .*)", bench.processes["worker"].log_text())
        if found:
            return found[-1].strip()
        time.sleep(0.05)
    return "(not found in the worker's log)"


# -- the report -------------------------------------------------------------------------------

LATENCY_HEAD = ["| | n | min ms | p50 ms | p90 ms | p99 ms | max ms |", "|---|---:|" + "---:|" * 5]


def pct(values, q: float, scale: float = 1000) -> float:
    return scale * float(np.percentile(values, q))


def latency_row(name: str, values) -> str:
    return f"| {name} | {len(values)} | " + " | ".join(
        f"{pct(values, q):.1f}" for q in (0, 50, 90, 99, 100)) + " |"  # fmt: skip


def verdict(name: str, measured: float, unit: str, target: float, at_least=False) -> str:
    ok = measured >= target if at_least else measured <= target
    sign, result = "≥" if at_least else "≤", "PASS" if ok else "**FAIL**"
    shown = f"{measured:,.0f}" if abs(measured) >= 100 else f"{measured:.3g}"
    return f"| {name} | {shown}{unit} | {sign} {target:g}{unit} | {result} |"


def cpu_line(out: dict, during: str) -> str:
    return (f"Shares of the machine's CPU time during {during}: PostgreSQL + Redis "
            f"{out['servers']:.0%}, processes not the benchmark's "
            f"{out['others']:.0%}.")  # fmt: skip


def submissions_lines(s: dict) -> tuple[list[str], list[str]]:
    rate = {name: statistics.median(rates) for name, rates in s["rate"].items()}
    cpu = {name: [1000 * statistics.median(s[k][name]) for k in ("app_cpu", "pg_cpu")]
           for name in rate}  # fmt: skip
    rows = [f"| {n} | {', '.join(f'{r:.0f}' for r in s['rate'][n])} | {rate[n]:.0f} | "
            f"{cpu[n][0]:.2f} | {cpu[n][1]:.2f} |" for n in rate]  # fmt: skip
    (strict, _), own = [key for key in s["open"] if key[0] == "gradq"], list(s["open"])[2]
    lines = [
        "", "### Submissions: `POST /v1/jobs` vs a minimal endpoint (one row, `send_task`)",
        "", f"Closed loop: {CONNECTIONS} keep-alive connections, each sending its next request as "
        f"soon as it has the answer, {s['seconds']:g} s a repeat, alternated. Half the requests "
        "carry a fresh Idempotency-Key. No worker runs.", "",
        "| endpoint | req/s per repeat | median req/s | its process, CPU ms a request | "
        "PostgreSQL, CPU ms a request |", "|---|---|---:|---:|---:|", *rows, "",
        f"Open loop, {CONNECTIONS} keep-alive connections, {2 * s['seconds']:g} s of requests "
        "due at a fixed rate, latency counted from each request's due time (as wrk2 does). "
        "Half the minimal's rate is the target's \"half that rate\" read literally; above "
        "gradq's own rate, its queue grows for the whole run. Half gradq's own rate is shown "
        "too:", "",
        *LATENCY_HEAD,
        *(latency_row(f"{name} at {at:.0f} req/s", v) for (name, at), v in s["open"].items()),
        "", f"Answers other than 202: {s['errors']}. Messages left in Redis: "
        f"{s['queued_messages']:,} (flushed). The load generator (this process) used "
        f"{1e6 * s['client'][0] / s['client'][1]:.0f} µs of CPU a request, on the same 2 cores. "
        + cpu_line(s, "this part"),
    ]  # fmt: skip
    targets = [
        verdict("submissions: gradq's rate ÷ the minimal's", rate["gradq"] / rate["minimal"],
                "", 0.7, at_least=True),
        verdict(f"submissions: p99 at half the minimal's rate ({strict[1]:.0f}/s)",
                pct(s["open"][strict], 99), " ms", 50),
        verdict(f"submissions: p99 at half gradq's own rate ({own[1]:.0f}/s)",
                pct(s["open"][own], 99), " ms", 50),
        verdict("submissions: p50 there, keep-alive (~40 ms: the delayed-ACK stall)",
                pct(s["open"][own], 50), " ms", 20),
    ]  # fmt: skip
    return lines, targets


def queue_lines(q: dict) -> tuple[list[str], list[str]]:
    lines = [
        "", "### Queue latency, idle worker (prefork, concurrency 1)", "",
        f"{len(q['run'])} tiny jobs (faces logistic regression, 1 to 10 epochs), each submitted "
        f"{1000 * IDLE_PAUSE:.0f} ms after the previous one ended, alternated with the baseline, "
        "a trivial task of a separate Celery app (bench/minimal_app.py: acks late, prefetch 1, "
        "a queue and a prefork worker of its own) on the same Redis. Claimed: the job's "
        "`running` event in `job_events`. The API writes dispatched_at just after `send_task` "
        "returns, and answers 202 after committing it: a 202 can reach the client after the "
        "claim. created_at → claimed also holds the API's insert, commit and publish.", "",
        *LATENCY_HEAD,
        *(latency_row(f"gradq: {label}", q[key]) for key, label in QUEUE_FROM.items()),
        latency_row("baseline: before send_task → task starts", q["baseline"]), "",
        f"Jobs not succeeded: {sum(s != 'succeeded' for s in q['statuses'])}. A tiny job then "
        f"ran (claimed → finished_at) {1000 * statistics.median(q['run']):.0f} ms, median. "
        + cpu_line(q, "this part"),
    ]  # fmt: skip
    targets = [verdict(f"queue latency: p{p}, {QUEUE_FROM['dispatched']}",
                       pct(q["dispatched"], p), " ms", target)
               for p, target in ((50, 20), (99, 100))]  # fmt: skip
    return lines, targets


def tracking_lines(c: dict, t: dict) -> tuple[list[str], list[str]]:
    timed, epochs = np.array(c["plain"]), c["epochs"]
    loop = {kind: statistics.median(c[kind]) for kind in ("without", "with")}
    alone, served = statistics.median(t["without"]), statistics.median(t["with"])
    beside = statistics.median(t["beside"])
    phase = [float(m[1]) / 1000 if (m := re.search(r"training (\d+) ms", line)) else math.nan
             for line in t["lines"]]  # the worker's own training phase, in seconds  # fmt: skip
    column = lambda values: ", ".join(f"{x:.2f}" for x in values)  # noqa: E731
    training = t["spec"]["training"]
    ratios = [w / a for w, a in zip(t["with"], t["without"], strict=True)]
    beside_ratios = [b / a for b, a in zip(t["beside"], t["without"], strict=True)]
    ratio, (low, high) = statistics.median(ratios), median_interval(ratios, CONFIDENCE)
    lines = [
        "", "### Tracking", "",
        f"(a) Faces logistic regression, {epochs} epochs in this process, without and with the "
        "worker's `MetricsBuffer` + `Heartbeat` (a new run on the MLflow server, a running job's "
        f"row in PostgreSQL), {len(c['with'])} times each, alternated:", "",
        "| | median | per epoch |", "|---|---:|---:|",
        *(f"| training loop {kind} the callbacks | {loop[kind]:.3f} s | "
          f"{1e6 * loop[kind] / epochs:.1f} µs |" for kind in loop),
        f"| the callbacks, timed around each epoch's calls | | mean {1e6 * timed.mean():.1f} µs |",
        f"| … by percentile (heartbeats: Heartbeat's thread) | | p50 "
        f"{pct(c['plain'], 50, 1e6):.1f} µs, p99 {pct(c['plain'], 99, 1e6):.1f} µs |",
        f"| then `MetricsBuffer.close()`: the metrics not sent yet | "
        f"{statistics.median(c['close']):.2f} s | |", "",
        f"(b) Digits, [64, 32] relu/softmax, adam, batch {training['batch_size']}, "
        f"{training['epochs']} epochs (set at run time for ~{TRAIN_SECONDS:g} s of training): the "
        "worker's `models.train(...)` call in this process (training alone); the same while "
        "another process (`bench/metrics_load.py`) sends the job's metrics to the MLflow "
        "server as the worker would, at the pace training makes them (the server's work "
        "without the worker's); and submit → finished_at through the API, the worker and "
        f"MLflow; {len(t['with'])} times each, alternated.", "",
        "| | per repeat, s | median s |", "|---|---|---:|",
        f"| training alone | {column(t['without'])} | {alone:.2f} |",
        f"| training alone, beside its metrics sent to MLflow by another process | "
        f"{column(t['beside'])} | {beside:.2f} |",
        f"| through the service | {column(t['with'])} | {served:.2f} |",
        f"| … of which submit → claimed | {column(t['to_claim'])} | "
        f"{statistics.median(t['to_claim']):.2f} |",
        f"| … of which the worker's training phase | {column(phase)} | "
        f"{statistics.median(phase):.2f} |",
        f"| through the service ÷ training alone, same repeat | {column(ratios)} | "
        f"{ratio:.2f} |",
        f"| beside the metrics ÷ training alone, same repeat | {column(beside_ratios)} | "
        f"{statistics.median(beside_ratios):.2f} |",
        "", f"The verdict below takes the median of the same-repeat ratios, {ratio:.3f}, not "
        f"the ratio of the medians, {served / alone:.3f} (beside the metrics: "
        f"{beside / alone:.3f}): the machine's speed drifts over minutes, and a repeat's runs "
        f"are adjacent in time. That median lies between {low:.3f} and {high:.3f} with "
        f"at least {CONFIDENCE:.0%} confidence (a distribution-free interval, order statistics: "
        "`scipy.stats.quantile_test`): how far this run can tell it from 1.05.",
        "", f"Statuses: {', '.join(t['statuses'])}. The worker's log line (`run_job`: claim to "
        "end, by phase) of each, after that of the 1-epoch job before them (the worker's first "
        "on digits):", "", f"- `{t['first']}`", *(f"- `{line}`" for line in t["lines"]), "",
        cpu_line(t, "(b)"),
    ]  # fmt: skip
    targets = [
        verdict("tracking: callbacks per epoch, mean of the timed calls", 1000 * timed.mean(),
                " ms", 0.1),
        verdict("tracking: callbacks per epoch, loop with minus without", 1000 *
                (loop["with"] - loop["without"]) / epochs, " ms", 0.1),
        verdict("tracking: the long job's training alone, median (the target's premise)",
                alone, " s", 5, at_least=True),
        verdict("tracking: long job through the service ÷ training alone, same repeat", ratio,
                "", 1.05),
    ]  # fmt: skip
    return lines, targets


def median_interval(values: list[float], confidence: float = 0.9) -> tuple[float, float]:
    """A distribution-free interval (order statistics) that holds the median of the
    distribution ``values`` come from with at least ``confidence``."""
    test = stats.quantile_test(values, q=statistics.median(values), p=0.5)
    interval = test.confidence_interval(confidence)
    return float(interval.low), float(interval.high)


def report(args) -> str:
    """Start everything, measure, stop everything; the section as markdown."""
    started = time.perf_counter()
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gradq-bench-")))
        bench = start_servers(stack, home, REDIS_DB)
        environment = machine(bench)
        sub = submissions(bench, args.repeats, args.seconds)
        flush_redis(bench.broker)  # the submissions' messages: nobody is to run those jobs
        start_workers(bench)
        queue = queue_latency(bench, args.jobs)
        callbacks = callback_cost(bench, args.callback_epochs, args.repeats)
        overhead = tracking_overhead(bench, args.long_repeats)
    parts = [submissions_lines(sub), queue_lines(queue), tracking_lines(callbacks, overhead)]
    lines, targets = ([x for part in parts for x in part[i]] for i in range(2))
    return "\n".join([
        "## Service: submissions, queue latency, tracking (Redis + PostgreSQL)", "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Command: `.venv/bin/python bench/service.py {shlex.join(sys.argv[1:])}` (`make bench` "
        "runs it with `--write docs/benchmarks.md` after bench/core.py)", *environment,
        "- Started by the benchmark with the commands of `service/stack.py`: `mlflow server "
        "--workers 1` on a PostgreSQL store (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false), the API "
        "as one uvicorn process, Celery workers `--pool prefork --concurrency 1` on Redis; jobs "
        "in PostgreSQL. The client, the servers and the workers share the machine's 2 cores.",
        *lines, "", *targets_table(targets, seconds=time.perf_counter() - started),
    ]) + "\n"  # fmt: skip


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="alternated repeats")
    # The long job's ratio is the noisiest figure here: 5 % to judge, against ±10-15 % between
    # two adjacent repeats of the same training on these machines.
    parser.add_argument("--long-repeats", type=int, default=15, help="repeats of the long job")
    parser.add_argument("--seconds", type=float, default=4, help="closed-loop seconds a repeat")
    parser.add_argument("--jobs", type=int, default=200, help="tiny jobs for queue latency")
    parser.add_argument("--callback-epochs", type=int, default=5000)
    args = parser.parse_args()
    # Ctrl-C and SIGTERM (even when started with SIGINT ignored) unwind the ExitStack, which
    # stops the servers and drops the databases.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    # This process's start-up objects frozen, as the worker's are (workers/heap.py): a full
    # collection here took ~0.1-0.2 s, a stall of the load generator or of training alone.
    freeze_startup_objects()
    publish(report(args), args.write, "service")


if __name__ == "__main__":
    main()
