"""What each request of a trial costs the MLflow server: its CPU a request, by kind.

``.venv/bin/python bench/mlflow_requests.py [--calls 100]`` starts gradq's MLflow server (make
up's command, on a fresh PostgreSQL database of the local server) and makes each kind of
request a trial makes ``--calls`` times, one after another, reading the server's CPU time
(/proc, its process and children) around each kind. Printed as a markdown table; the trials
section of docs/benchmarks.md cites it.
"""
# ruff: noqa: E402  (tests/ is not installed: the repository root goes on sys.path first)

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import requests
from mlflow.entities import (
    Dataset,
    DatasetInput,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Param,
    RunTag,
)
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# As a worker does (workers/celery_app.py): else ending a run also reads the whole run back.
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"

from bench_stack import cpu_seconds_by  # bench/bench_stack.py

from contract.spec import JobSpec, flatten
from tests.processes import start_mlflow_server
from tests.servers import empty_postgres_database
from workers import artifacts

SPEC = {"experiment": "bench", "dataset": {"name": "faces"}}


def server_cpu(server) -> float:
    return cpu_seconds_by(lambda session, _: session == server.popen.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    spec = flatten(JobSpec.model_validate(SPEC).model_dump())
    params = [Param(key, str(value)) for key, value in spec.items()]
    with tempfile.TemporaryDirectory() as folder, empty_postgres_database("gradq_bench_req") as db:
        server = start_mlflow_server(Path(folder) / "mlflow", db)
        try:
            rows = measure(MlflowClient(server.url), server, Path(folder), params, args.calls)
        finally:
            server.stop()
    print(f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"- Command: `.venv/bin/python bench/mlflow_requests.py --calls {args.calls}`\n")
    print("| request | server CPU ms a request | wall ms a request |")
    print("|---|---:|---:|")
    for name, cpu, wall in rows:
        print(f"| {name} | {cpu:.1f} | {wall:.1f} |")
    return 0


def measure(client: MlflowClient, server, folder: Path, params, calls: int) -> list:
    experiment = client.create_experiment("requests")
    files = folder / "first-part"
    (files / "code").mkdir(parents=True)
    for i in range(9):  # a model's files before training: ~10, a few KB each
        (files / ("code" if i < 3 else ".") / f"file-{i}.txt").write_bytes(os.urandom(2000))
    each_file = [(path, path.parent.relative_to(files).as_posix().replace(".", "") or None)
                 for path in sorted(files.rglob("*")) if path.is_file()]  # fmt: skip
    runs, models, health = [], [], requests.Session()

    def repo(run):
        return get_artifact_repository(run.artifact_uri, tracking_uri=client.tracking_uri)

    dataset = DatasetInput(Dataset("faces", "d1", "local", '{"uri": "faces"}'))
    kinds = {
        "/health (a request that does nothing)": lambda i: health.get(server.url + "/health"),
        "runs/create": lambda i: runs.append(client.create_run(experiment).info),
        "runs/log-batch: the spec's params and tags": lambda i: client.log_batch(
            runs[i].run_id, params=params, tags=[RunTag("gradq.job_id", str(i))]
        ),
        "runs/log-inputs: the dataset": lambda i: client.log_inputs(runs[i].run_id, [dataset]),
        "logged-models (create, with params)": lambda i: models.append(
            client.create_logged_model(
                experiment,
                name="model",
                source_run_id=runs[i].run_id,
                params={p.key: p.value for p in params},
            )
        ),
        "runs/outputs: the model linked": lambda i: client.log_outputs(
            runs[i].run_id, [LoggedModelOutput(models[i].model_id, 10)]
        ),
        "gradq's batch upload: 10 files": lambda i: artifacts.upload(
            client, [(runs[i].artifact_uri, str(files))]
        ),
        "MLflow's upload: the same 10 files, a request each": lambda i: [
            repo(runs[i]).log_artifact(str(path), under) for path, under in each_file
        ],
        "runs/log-batch: 8 final metrics": lambda i: client.log_batch(
            runs[i].run_id, metrics=[Metric(f"m{k}", 0.5, 0, 10) for k in range(8)]
        ),
        "logged-models PATCH: READY": lambda i: client.finalize_logged_model(
            models[i].model_id, LoggedModelStatus.READY
        ),
        "runs/update: the run ended": lambda i: client.set_terminated(runs[i].run_id),
    }
    rows = []
    for name, call in kinds.items():
        before, started = server_cpu(server), time.perf_counter()
        for i in range(calls):
            call(i)
        wall = time.perf_counter() - started
        time.sleep(0.2)  # the last answers' logging done
        cpu = server_cpu(server) - before
        rows.append((name, 1000 * cpu / calls, 1000 * wall / calls))
    return rows


if __name__ == "__main__":
    sys.exit(main())
