"""What MLflow's tracking store spends storing a job's metric values, beside the rows' floor.

``.venv/bin/python bench/metric_store.py --write docs/benchmarks.md`` stores, in a new
PostgreSQL database of its own (dropped at the end), batches of 1,000 metric values as a worker
sends them (100 epochs of the long job's 10 names) into one run each way, the ways rotated:

- MLflow's own ``SqlAlchemyStore.log_batch``, the handler behind the server's
  ``runs/log-batch`` without HTTP and JSON;
- gradq's ``BatchMetricsStore.log_batch`` (mlflow_server/store.py), the same handler as
  ``mlflow server --app-name gradq`` runs it;
- the same rows put into the same ``metrics`` table in one multi-row INSERT, as SQLAlchemy
  Core does it, and by PostgreSQL's COPY, the batch's latest values upserted into
  ``latest_metrics`` each time: what the rows cost without MLflow's handler.

Every value the service's jobs log goes through the second.
"""
# ruff: noqa: E402  (tests/ is not installed: the repository root goes on sys.path first)

import datetime
import io
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlflow.entities import Metric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from sections import argument_parser, cpu, publish, targets_table  # bench/ on sys.path
from sqlalchemy import MetaData, create_engine, insert
from sqlalchemy.dialects.postgresql import insert as upsert

from mlflow_server.store import BatchMetricsStore
from tests.servers import empty_postgres_database

DIAGNOSTICS = [f"{kind}.W{layer}" for kind in ("grad_norm", "update_ratio") for layer in (1, 2, 3)]
NAMES = ["cost", "train_accuracy", "val_accuracy", "learning_rate", *DIAGNOSTICS]
EPOCHS_A_BATCH = 100  # 1,000 values: MLflow's limit for one log_batch call
WAYS = {
    "mlflow": "MLflow's SqlAlchemyStore.log_batch (the server's handler)",
    "gradq": "gradq's BatchMetricsStore.log_batch (mlflow_server/store.py, the server's as gradq "
    "runs it)",
    "insert": "the same rows in one multi-row INSERT (SQLAlchemy Core), the latest values upserted",
    "copy": "the same rows by COPY (psycopg2), the latest values upserted",
}


def batch(first_step: int) -> list[Metric]:
    """EPOCHS_A_BATCH epochs of every name, from ``first_step`` on."""
    now = int(time.time() * 1000)
    steps = range(first_step, first_step + EPOCHS_A_BATCH)
    return [Metric(name, 0.5 + step * 1e-6, now, step) for step in steps for name in NAMES]


def store_rows(engine, tables: MetaData, run_id: str, metrics: list[Metric], copy: bool) -> None:
    """The rows MLflow stores for ``metrics`` (by INSERT or COPY), and the latest value of
    each name, in one transaction."""
    rows = [{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step,
             "is_nan": False, "run_uuid": run_id} for m in metrics]  # fmt: skip
    last = {row["key"]: row for row in rows}  # steps grow: the batch's last is the latest
    latest = tables.tables["latest_metrics"]
    with engine.begin() as connection:
        if copy:
            text = "".join(f"{r['key']}\t{r['value']!r}\t{r['timestamp']}\t{r['step']}\tf\t"
                           f"{run_id}\n" for r in rows)  # fmt: skip
            cursor = connection.connection.cursor()
            cursor.copy_expert(
                "COPY metrics (key, value, timestamp, step, is_nan, run_uuid) FROM STDIN",
                io.StringIO(text),
            )
        else:
            connection.execute(insert(tables.tables["metrics"]), rows)
        statement = upsert(latest).values(list(last.values()))
        columns = ("value", "timestamp", "step", "is_nan")
        update = {column: statement.excluded[column] for column in columns}
        connection.execute(
            statement.on_conflict_do_update(index_elements=["key", "run_uuid"], set_=update)
        )


def measure(repeats: int) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    database = empty_postgres_database("gradq_bench_metrics")
    with database as url, tempfile.TemporaryDirectory() as artifacts:
        stores = {
            "mlflow": SqlAlchemyStore(url, artifacts),
            "gradq": BatchMetricsStore(url, artifacts),
        }
        engine = create_engine(url)
        tables = MetaData()
        tables.reflect(engine, only=["metrics", "latest_metrics"])
        store = stores["mlflow"]  # makes the runs of every way
        experiment = store.create_experiment("metric-store")
        runs = {way: store.create_run(experiment, "bench", 0, [], way).info.run_id for way in WAYS}
        step, order = 0, list(WAYS)
        for repeat in range(repeats + 1):  # the first of each: warm-up, not counted
            turn = repeat % len(order)
            for way in order[turn:] + order[:turn]:  # rotated each repeat
                metrics = batch(step)
                started = time.perf_counter()
                if way in stores:
                    stores[way].log_batch(runs[way], metrics, [], [])
                else:
                    store_rows(engine, tables, runs[way], metrics, copy=way == "copy")
                if repeat:
                    seconds[way].append(time.perf_counter() - started)
            step += EPOCHS_A_BATCH
        engine.dispose()
        for each in stores.values():
            each.engine.dispose()
    return seconds


def report(seconds: dict[str, list[float]], took: float) -> str:
    values = EPOCHS_A_BATCH * len(NAMES)
    median = {way: statistics.median(s) for way, s in seconds.items()}
    rows = [f"| {WAYS[way]} | {median[way] * 1e3:.1f} | {median[way] / values * 1e6:.1f} |"
            for way in WAYS]  # fmt: skip
    ratios = [
        f"| MLflow's store ÷ {way}, per value (no target) | {median['mlflow'] / median[way]:.1f} "
        "| - | - |"
        for way in ("gradq", "insert", "copy")
    ]
    lines = [
        "## MLflow's tracking store: the cost of a metric value",
        "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Command: `.venv/bin/python bench/metric_store.py {shlex.join(sys.argv[1:])}`",
        f"- Machine: nproc {len(os.sched_getaffinity(0))}, {cpu()}; PostgreSQL local, a new "
        f"database; {len(seconds['mlflow'])} batches of {values} values each way, in one "
        "process, the ways rotated every repeat, after a warm-up batch each",
        "",
        f"| storing a batch of {values:,} values | median ms | µs a value |",
        "|---|---:|---:|",
        *rows,
        "",
        *targets_table(ratios, title="Ratios", seconds=took),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="batches each way")
    args = parser.parse_args()
    started = time.perf_counter()
    seconds = measure(args.repeats)
    publish(report(seconds, time.perf_counter() - started), args.write, "metric-store")


if __name__ == "__main__":
    main()
