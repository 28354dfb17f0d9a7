"""`gradq compare`: runs side by side (service/compare.py) as a table and a PNG."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from service.cli import ApiOption, answer, app, client, console, number
from service.compare import compare, plot_cost_curves
from service.mlflow_metrics import METRIC_KEYS

MetricOption = Annotated[str, typer.Option(help="cost, train_accuracy or val_accuracy.")]
StepOption = Annotated[int | None, typer.Option(help="Also show the metric at this epoch.")]
PlotOption = Annotated[Path, typer.Option(help="Where to draw their cost curves.")]


@app.command("compare")
def compare_jobs(
    job_ids: Annotated[list[str], typer.Argument(help="Two or more job ids.")],
    metric: MetricOption = "val_accuracy",
    step: StepOption = None,
    plot: PlotOption = Path("cost_curves.png"),
    api: ApiOption = "http://127.0.0.1:8000",
) -> None:
    """Compare jobs: only the params that differ, each one's final and best METRIC with its
    epoch, the value at --step, and a PNG of their cost curves overlaid."""
    if len(job_ids) < 2:
        console.print("[red]give two or more job ids")
        raise typer.Exit(2)
    if metric not in METRIC_KEYS:
        console.print(f"[red]--metric: one of {', '.join(METRIC_KEYS)}")
        raise typer.Exit(2)
    with client(api) as http:
        jobs = [answer(http.get(f"/v1/jobs/{job_id}")) for job_id in job_ids]
        histories = [answer(http.get(f"/v1/jobs/{job_id}/metrics")) for job_id in job_ids]
    rows = compare(jobs, histories, metric, step)
    differing = list(rows[0].params)
    at = [f"at {step}"] if step is not None else []
    table = Table("job", "name", *differing, f"final {metric}", "best (epoch)", *at)
    for row in rows:
        best = "" if row.best is None else f"{row.best:.4f} ({row.best_step})"
        shown_at = [number(row.at_step)] if step is not None else []
        table.add_row(row.job_id[:8], row.name or "", *row.params.values(), number(row.final),
                      best, *shown_at)  # fmt: skip
    console.print(table)
    plot_cost_curves(jobs, histories, plot)
    console.print(f"cost curves: {plot}")
