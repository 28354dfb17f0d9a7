"""What a sweep's parent run shows of its trials: trials.json and trials.md (the trials table
and, for a student, why each stopped trial stopped) and cost_curves.png (their cost curves
overlaid: the best thick, a stopped trial dashed up to its rung)."""

import json
from dataclasses import asdict
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from store.sweep_table import TrialRow


def trials_document(summary: dict, rows: list[TrialRow]) -> str:
    """trials.json: the sweep's summary (status, objective, best) and one object a trial."""
    return json.dumps({**summary, "trials": [asdict(row) for row in rows]}, indent=1)


def trials_markdown(summary: dict, rows: list[TrialRow]) -> str:
    """trials.md: the trials table, then the stopped trials with their rung, value, cutoff and
    rank, the numbers that stopped them."""
    metric, paths = summary["objective"]["metric"], summary["space"]
    lines = [
        f"# Sweep {summary['sweep_id']}: {summary['status']}",
        "",
        f"Objective: {metric} ({summary['objective']['goal']}). "
        f"Best: {summary['best_job'] or 'none yet'}"
        + (f", {metric} {summary['best_value']:.4g}." if summary["best_job"] else "."),
        "",
        "| trial | " + " | ".join(paths) + f" | status | {metric} | best (epoch) |",
        "|---|" + "---|" * len(paths) + "---|---:|---:|",
    ]
    for row in rows:
        best = "" if row.best_value is None else f"{row.best_value:.4g} ({row.best_epoch})"
        values = " | ".join(str(row.params[path]) for path in paths)
        lines.append(
            f"| {row.job_id[:8]} | {values} | {row.status} | {_number(row.objective)} | {best} |"
        )
    stopped = [(row, row.rungs[-1]) for row in rows if _stopped(row)]
    if stopped:
        lines += [
            "",
            "## Why stopped",
            "",
            "At each rung a trial goes on once it is in the top 1/eta of the trials that "
            "reached the rung, itself included; one that is not waits there. Once every trial "
            "has reached the rung or ended, those still waiting stop.",
            "",
            f"| trial | rung | epoch | {metric} | cutoff | rank |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for row, rung in stopped:
            lines.append(
                f"| {row.job_id[:8]} | {rung.rung} | {rung.epoch} | {_number(rung.value)} | "
                f"{_number(rung.cutoff)} | {rung.rank} of {rung.reached} |"
            )
    return "\n".join(lines) + "\n"


def plot_trial_curves(
    curves: dict[str, list[tuple[int, float]]], rows: list[TrialRow], best: str | None, path: Path
) -> None:
    """The trials' cost per epoch, ``curves`` by job id, into the PNG ``path``."""
    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)  # no pyplot: no global state, no GUI backend in a worker
    axes = figure.add_subplot()
    for row in rows:
        points = curves.get(row.job_id)
        if not points:
            continue
        stopped = _stopped(row)
        axes.plot(
            [step for step, _ in points],
            [value for _, value in points],
            label=row.job_id[:8] + (" (best)" if row.job_id == best else ""),
            linewidth=2.5 if row.job_id == best else 1.0,
            linestyle="--" if stopped else "-",
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel("cost")
    axes.set_title("the trials' cost per epoch (dashed: stopped at a rung)")
    if axes.lines:
        axes.legend(fontsize="x-small", ncol=2)
    figure.savefig(path, format="png")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _stopped(row: TrialRow) -> bool:
    return bool(row.rungs) and row.rungs[-1].state == "stopped"
