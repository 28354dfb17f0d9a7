"""`gradq sweep` and `gradq sweeps`: submit a sweep and follow its trials in a live table."""

import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.live import Live
from rich.table import Table

from service.cli import (
    FINAL,
    ApiOption,
    KeyOption,
    answer,
    app,
    client,
    console,
    number,
    post_file,
)

POLL_SECONDS = 1.0


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A sweep JSON.")],
    api: ApiOption = "http://127.0.0.1:8000",
    watch: Annotated[bool, typer.Option(help="Follow the trials until every one ends.")] = False,
    idempotency_key: KeyOption = None,
) -> None:
    """Submit a sweep (a base spec and a space, DESIGN.md section 5) and print its trials; with
    --watch, a live table of them until every one has ended."""
    with client(api) as http:
        made = post_file(http, "/v1/sweeps", spec, idempotency_key)
        console.print(f"sweep {made['id']} {made['status']}: {made['trial_count']} trials")
        if not watch:
            console.print(trials_table(made))
            return
        ended = follow_sweep(http, made)
    raise typer.Exit(0 if ended["status"] == "succeeded" else 1)


@app.command()
def sweeps(limit: int = 20, api: ApiOption = "http://127.0.0.1:8000") -> None:
    """List sweeps, newest first, with their trials' counts."""
    with client(api) as http:
        listed = answer(http.get("/v1/sweeps", params={"limit": limit}))["sweeps"]
    table = Table("id", "experiment", "status", "trials", "succeeded", "failed", "cancelled")
    for item in listed:
        ended = (str(item["counts"][status]) for status in ("succeeded", "failed", "cancelled"))
        table.add_row(
            item["id"], item["experiment"], item["status"], str(item["trial_count"]), *ended
        )
    console.print(table)


def follow_sweep(http: httpx.Client, made: dict) -> dict:
    """Redraw the trials table every POLL_SECONDS until the sweep ends; return the sweep."""
    current = made
    with Live(trials_table(current), console=console, auto_refresh=False) as live:
        while current["status"] not in FINAL:
            time.sleep(POLL_SECONDS)
            current = answer(http.get(f"/v1/sweeps/{made['id']}"))
            live.update(trials_table(current), refresh=True)
    best = current["best_job"]
    console.print(f"sweep {current['id']} {current['status']}; best job: {best or 'none'}")
    return current


def trials_table(current: dict) -> Table:
    """One row a trial: the values it varied, its status, its objective and its best."""
    objective = current["objective"]
    paths = list(current["request"]["space"])
    title = f"{objective['metric']} ({objective['goal']}): best {current['best_job'] or '-'}"
    halving = current["request"].get("halving") is not None
    columns = [*paths, "status", *(["rungs"] if halving else []), objective["metric"]]
    table = Table("job", *columns, "best (epoch)", title=title)
    for trial in current["trials"]:
        best = trial["best_value"]
        marker = " *" if trial["job_id"] == current["best_job"] else ""
        table.add_row(
            trial["job_id"][:8] + marker,
            *(str(trial["params"][path]) for path in paths),
            trial["status"],
            *([rung_marks(trial["rungs"])] if halving else []),
            number(trial["objective"]),
            "" if best is None else f"{best:.4f} ({trial['best_epoch']})",
        )
    return table


RUNG_MARKS = {"promoted": "↑", "waiting": "…", "stopped": "✗", "cancelled": "⊘", "failed": "!"}


def rung_marks(rungs: list[dict]) -> str:
    """A trial's way up the rungs: "1↑ 2↑ 3✗" (promoted at 1 and 2, stopped at 3; "…" waits
    there; "⊘" and "!": cancelled or failed while waiting), each with its rank among those that
    had reached the rung."""
    return " ".join(
        f"{r['rung']}{RUNG_MARKS[r['state']]} {r['rank']}/{r['reached']}" for r in rungs
    )
