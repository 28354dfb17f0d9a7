"""Comparing runs side by side: the params that differ, each run's final and best value of a
metric with its epoch, the value at a chosen step, and their cost curves overlaid in a PNG.
What `gradq compare` prints, from the API's job and metrics answers."""

import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from contract.best_value import best_point
from contract.spec import flatten


@dataclass
class Compared:
    job_id: str
    name: str | None
    params: dict[str, str]  # only those that differ between the runs compared
    final: float | None
    best: float | None
    best_step: int | None
    at_step: float | None  # the value logged at the chosen step, or the last one before it


def compare(jobs: list[dict], histories: list[dict], metric: str, step: int | None) -> list:
    """One Compared a job, from the API's job answers and their metrics answers
    ({"metrics": {name: [{"step", "value"}, ...]}}), in the order given."""
    flat = [flatten(job["spec"]) for job in jobs]
    keys = sorted({key for params in flat for key in params})
    differing = [key for key in keys if len({params.get(key) for params in flat}) > 1]
    rows = []
    for job, params, history in zip(jobs, flat, histories, strict=True):
        points = _points(history, metric)
        final = (job.get("metrics") or {}).get(metric)
        # the final value is measured after the last epoch: at step `epochs`
        found = best_point(metric, [*points, (job["progress"]["epochs"], final)])
        best, best_step = found or (None, None)
        rows.append(
            Compared(
                job_id=job["id"],
                name=job.get("name"),
                params={key: params.get(key, "") for key in differing},
                final=final,
                best=best,
                best_step=best_step,
                at_step=None if step is None else _at(points, step),
            )
        )
    return rows


def plot_cost_curves(jobs: list[dict], histories: list[dict], path: Path) -> None:
    """The runs' cost per epoch overlaid, one line each, labelled by name or id, into ``path``."""
    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for job, history in zip(jobs, histories, strict=True):
        points = _points(history, "cost")
        axes.plot(
            [s for s, _ in points], [v for _, v in points], label=job.get("name") or job["id"][:8]
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel("cost")
    axes.set_title("cost per epoch")
    axes.legend(fontsize="small")
    figure.savefig(path, format="png")


def _points(history: dict, metric: str) -> list[tuple[int, float]]:
    return sorted(
        (point["step"], point["value"])
        for point in history["metrics"].get(metric, [])
        if point["value"] is not None and math.isfinite(point["value"])
    )


def _at(points: list[tuple[int, float]], step: int) -> float | None:
    before = [value for s, value in points if s <= step]
    return before[-1] if before else None
