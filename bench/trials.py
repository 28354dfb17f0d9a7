"""The trials benchmark: what a sweep's trial costs beyond its training, on one worker.

``.venv/bin/python bench/trials.py --write docs/benchmarks.md`` starts the stack of
bench/bench_stack.py (an MLflow server on PostgreSQL, the API, one Celery worker of concurrency
1 on Redis db 8), then:

1. a burst: a grid sweep of ``--tiny`` trials (faces logistic regression, 10 epochs, about a
   millisecond of training each) sent at once; a trial's cost is the time from the first
   trial's claim to the last one's end, divided by the trials;
2. beside it, against the same MLflow server, a bare run lifecycle as any tracked script does
   it (create the run, log the same params, end it), ``--tiny`` times: the floor MLflow sets;
3. a sweep of ``--long`` trials of about a second of training each (digits, [64, 32]):
   the time a trial takes beyond its training, as a share of its training.

Issue 28's targets: at most 100 ms a tiny trial in the burst, and under 10% on one-second
trials (Ray Tune's published bar is 20%).
"""
# ruff: noqa: E402  (tests/ is not installed: the repository root goes on sys.path first)

import datetime
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_stack  # bench/bench_stack.py
from sections import argument_parser, publish, targets_table

from contract.spec import JobSpec, flatten
from store.tables import FINAL_STATUSES, Job

REDIS_DB = 8  # a db of its own (tests and other benchmarks use 9 to 15)
TINY = {"dataset": {"name": "faces"}, "model": {"hidden_layers": [], "init": "zeros"},
        "training": {"learning_rate": 0.005, "epochs": 10}}  # fmt: skip
LONG = {"dataset": {"name": "digits"},
        "model": {"hidden_layers": [64, 32], "hidden_activation": "relu", "output": "softmax"},
        "training": {"optimizer": "adam", "batch_size": 64, "epochs": 120}}  # fmt: skip


def run_sweep(api: httpx.Client, sql, base: dict, seeds: int, timeout: float) -> list:
    """A grid of ``seeds`` trials (training.seed 0, 1, ...) sent at once; their rows, ended."""
    request = {"base": base, "space": {"training.seed": list(range(seeds))}}
    sweep = api.post("/v1/sweeps", json=request).raise_for_status().json()
    deadline = time.monotonic() + timeout
    while api.get(f"/v1/sweeps/{sweep['id']}").json()["status"] not in FINAL_STATUSES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep {sweep['id']} not over in {timeout:g} s")
        time.sleep(0.5)
    with sql.connect() as connection:
        return connection.execute(select(Job).where(Job.sweep_id == sweep["id"])).all()


def span(trials: list) -> float:
    """Seconds from the first trial's claim to the last one's end."""
    return (max(t.finished_at for t in trials) - min(t.started_at for t in trials)).total_seconds()


def bare_lifecycles(client: MlflowClient, experiment: str, count: int) -> list[float]:
    """Seconds of each bare run: create, log the job spec's params in one batch, end."""
    experiment_id = client.create_experiment(experiment)
    params = [Param(k, v) for k, v in flatten(JobSpec.model_validate(TINY).model_dump()).items()]
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        run = client.create_run(experiment_id)
        client.log_batch(run.info.run_id, params=params)
        client.set_terminated(run.info.run_id)
        seconds.append(time.perf_counter() - started)
    return seconds


def measure(args) -> dict:
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gradq-trials-")))
        bench = bench_stack.start_servers(stack, home, args.redis_db)
        bench_stack.start_workers(bench, concurrency=1, baseline=False)
        api = stack.enter_context(httpx.Client(base_url=bench.url["api"], timeout=30))
        sql = create_engine(bench.jobs_db)
        stack.callback(sql.dispose)
        experiment = f"bench-trials-{int(time.time())}"
        base = {**TINY, "experiment": experiment}
        run_sweep(api, sql, base, 2, args.timeout)  # warm: the dataset, the worker's imports
        tiny = run_sweep(api, sql, base, args.tiny, args.timeout)
        bare = bare_lifecycles(MlflowClient(bench.url["mlflow"]), f"{experiment}-bare", args.tiny)
        long = run_sweep(api, sql, {**LONG, "experiment": experiment}, args.long, args.timeout)
        machine = bench_stack.machine(bench)
    return {"tiny": tiny, "bare": bare, "long": long, "machine": machine}


def report(args, out: dict, seconds: float) -> tuple[str, bool]:
    tiny, long = out["tiny"], out["long"]
    per_tiny = span(tiny) / len(tiny)
    bare = statistics.median(out["bare"])
    training = [t.metrics["training_seconds"] for t in long]
    per_long = span(long) / len(long)
    overhead = per_long / statistics.fmean(training) - 1
    attempts = sorted((t.finished_at - t.started_at).total_seconds() for t in tiny)
    targets = [
        ("a tiny trial in a burst", f"{1000 * per_tiny:.0f} ms", "≤ 100 ms", per_tiny <= 0.1),
        ("one-second trials: time beyond training", f"{overhead:.1%}", "< 10%", overhead < 0.1),
    ]
    verdicts = [f"| {n} | {m} | {r} | {'PASS' if ok else '**FAIL**'} |" for n, m, r, ok in targets]
    lines = [
        "## Sweeps: what a trial costs beyond its training (Redis + PostgreSQL)",
        "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Command: `.venv/bin/python bench/trials.py {shlex.join(sys.argv[1:])}`",
        *out["machine"],
        "- One Celery worker of concurrency 1; the MLflow server on PostgreSQL; the benchmark, "
        "the servers and the worker share the machine's cores.",
        "",
        "| | trials | per trial | beside it |",
        "|---|---:|---:|---|",
        f"| tiny trials (faces, 10 epochs) sent at once | {len(tiny)} | {1000 * per_tiny:.0f} ms "
        f"| a bare MLflow run lifecycle (create, params, end), median {1000 * bare:.1f} ms: "
        f"{per_tiny / bare:.1f} times it |",
        f"| … each trial's own claim to end, median | | "
        f"{1000 * statistics.median(attempts):.0f} ms | |",
        f"| one-second trials (digits, [64, 32], adam, {LONG['training']['epochs']} epochs) "
        f"| {len(long)} | {per_long:.2f} s | training {statistics.fmean(training):.2f} s on "
        "average |",
        "",
        *targets_table(verdicts, seconds=seconds),
    ]
    return "\n".join(lines) + "\n", all(ok for *_, ok in targets)


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--tiny", type=int, default=100, help="tiny trials in the burst")
    parser.add_argument("--long", type=int, default=10, help="one-second trials")
    parser.add_argument("--redis-db", type=int, default=REDIS_DB)
    parser.add_argument("--timeout", type=float, default=900, help="seconds for each sweep")
    args = parser.parse_args()
    started = time.perf_counter()
    out = measure(args)
    section, passed = report(args, out, time.perf_counter() - started)
    publish(section, args.write, "trials")
    print("trial targets:", "PASS" if passed else "FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
