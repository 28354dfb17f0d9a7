"""The `gradq` command: the embedded stack, a worker, migrations, and a client of the API."""

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as ProgressBars
from rich.table import Table

from settings import get_settings

app = typer.Typer(help="Train and compare neural networks written from first principles.")
datasets_app = typer.Typer(help="Upload and list datasets.")
app.add_typer(datasets_app, name="datasets")
console = Console()

FINAL = {"succeeded", "failed", "cancelled"}
ApiOption = Annotated[str, typer.Option(envvar="GRADQ_API_URL", help="Base URL of the gradq API.")]
KeyOption = Annotated[str | None, typer.Option(help="Idempotency-Key header.")]


def client(api: str) -> httpx.Client:
    token = os.environ.get("GRADQ_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=api.rstrip("/"), headers=headers, timeout=30)


def post_file(http: httpx.Client, path: str, body: Path, idempotency_key: str | None) -> dict:
    """POST the JSON file ``body`` as it is (the API validates it) and return the answer."""
    headers = {"Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return answer(http.post(path, content=body.read_bytes(), headers=headers))


def answer(response: httpx.Response) -> dict:
    """The JSON body of a 2xx answer; otherwise print the API's error and exit 1."""
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
        field = f" ({error['field']})" if error.get("field") else ""
        console.print(f"[red]{response.status_code} {error['code']}{field}: {error['message']}")
    except (ValueError, KeyError, TypeError):
        console.print(f"[red]{response.status_code}: {response.text[:500]}")
    raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Upgrade the jobs database to the newest schema."""
    from store.migrate import upgrade

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sql_url)
    console.print(f"migrated {settings.sql_url}")


@app.command()
def up(
    api_port: int = 8000,
    mlflow_port: int = 5000,
    host: str = "127.0.0.1",
) -> None:
    """Start the embedded stack: MLflow UI, API, one worker. Ctrl-C stops everything."""
    from service.stack import run_embedded_stack

    raise typer.Exit(run_embedded_stack(host=host, api_port=api_port, mlflow_port=mlflow_port))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`)."""
    command = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", *ctx.args]
    os.execv(sys.executable, command)


@app.command()
def reconciler() -> None:
    """Run the reconciler (Celery beat and its pass, on a queue of their own): one per stack."""
    from service.stack import reconciler_command

    os.execv(sys.executable, reconciler_command())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(ctx: typer.Context) -> None:
    """Run Flower, Celery's monitor, behind basic auth: FLOWER_BASIC_AUTH=user:password."""
    user, _, password = os.environ.get("FLOWER_BASIC_AUTH", "").partition(":")
    if not (user and password):  # Flower would otherwise show every task to anyone
        console.print("[red]set FLOWER_BASIC_AUTH to user:password: Flower never runs without auth")
        raise typer.Exit(2)
    command = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower", *ctx.args]
    os.execv(sys.executable, command)


@app.command()
def submit(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A job spec JSON.")],
    watch: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    idempotency_key: KeyOption = None,
    api: ApiOption = "http://127.0.0.1:8000",
) -> None:
    """Submit a job spec; with --watch, show its progress until it ends."""
    with client(api) as http:
        job = post_file(http, "/v1/jobs", spec, idempotency_key)
        console.print(f"job {job['id']} {job['status']}")
        if watch:
            job = follow(http, job)
            raise typer.Exit(0 if job["status"] == "succeeded" else 1)


def follow(http: httpx.Client, job: dict) -> dict:
    """Poll the job, drawing epoch, cost and ETA, until it ends; return it."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("cost {task.fields[cost]}"),
        TimeRemainingColumn(),
    )
    with ProgressBars(*columns, console=console) as progress:
        bar = progress.add_task(job["status"], total=job["progress"]["epochs"], cost="-")
        while job["status"] not in FINAL:
            time.sleep(0.5)
            job = answer(http.get(f"/v1/jobs/{job['id']}"))
            cost = job["progress"]["cost"]
            progress.update(
                bar,
                description=job["status"],
                completed=job["progress"]["epoch"] or 0,
                cost="-" if cost is None else f"{cost:.4f}",
            )
        if job["status"] == "succeeded":
            progress.update(bar, completed=job["progress"]["epochs"])
    metrics = {k: v for k, v in (job.get("metrics") or {}).items() if v is not None}
    console.print(f"job {job['id']} {job['status']} {metrics}")
    if job.get("error"):
        console.print(f"[red]{job['error']}")
    if job.get("mlflow_url"):
        console.print(f"MLflow run: {job['mlflow_url']}")
    return job


@app.command()
def jobs(
    status: str | None = None,
    experiment: str | None = None,
    limit: int = 20,
    api: ApiOption = "http://127.0.0.1:8000",
) -> None:
    """List jobs, newest first."""
    params = {
        k: v for k, v in {"status": status, "experiment": experiment, "limit": limit}.items() if v
    }
    with client(api) as http:
        page = answer(http.get("/v1/jobs", params=params))
    table = Table("id", "experiment", "name", "status", "epoch", "cost", "val_accuracy")
    for job in page["jobs"]:
        progress, metrics = job["progress"], job.get("metrics") or {}
        table.add_row(
            job["id"],
            job["experiment"],
            job["name"] or "",
            job["status"],
            f"{progress['epoch'] or 0}/{progress['epochs']}",
            number(progress["cost"]),
            number(metrics.get("val_accuracy")),
        )
    console.print(table)


def number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


@app.command()
def show(job_id: str, api: ApiOption = "http://127.0.0.1:8000") -> None:
    """Show one job as JSON."""
    with client(api) as http:
        console.print_json(json.dumps(answer(http.get(f"/v1/jobs/{job_id}"))))


@app.command()
def cancel(job_id: str, api: ApiOption = "http://127.0.0.1:8000") -> None:
    """Cancel a job: a queued one at once, a running one at its next epoch."""
    with client(api) as http:
        job = answer(http.post(f"/v1/jobs/{job_id}/cancel"))
    console.print(f"job {job['id']} {job['status']}")


@datasets_app.command("add")
def datasets_add(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    name: Annotated[str, typer.Option(help="The dataset's name in job specs.")],
    test_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    api: ApiOption = "http://127.0.0.1:8000",
) -> None:
    """Upload a .zip of class folders, an .npz, or the course's .h5 (with --test-file)."""
    with client(api) as http, path.open("rb") as main:
        files = {"file": (path.name, main)}
        if test_file is not None:
            files["test_file"] = (test_file.name, test_file.open("rb"))
        dataset = answer(http.post("/v1/datasets", data={"name": name}, files=files))
    console.print_json(json.dumps(dataset))


@datasets_app.command("list")
def datasets_list(api: ApiOption = "http://127.0.0.1:8000") -> None:
    """List the built-in and uploaded datasets."""
    with client(api) as http:
        console.print_json(json.dumps(answer(http.get("/v1/datasets"))))


# The sweep, compare and predict commands live in modules of their own, on this app.
from service import compare_cli, predict_cli, sweep_cli  # noqa: E402, F401
