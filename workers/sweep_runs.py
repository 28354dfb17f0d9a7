"""A sweep's parent run in MLflow (DESIGN.md section 7): made by the first trial to start, with
each trial's run its child (``mlflow.parentRunId``), so the MLflow UI shows a sweep's runs
grouped under it. The reconciler keeps it up to date as trials end (the best trial's metrics,
trials.json, trials.md, cost_curves.png) and ends it once every trial has ended, with the best
trial's params."""

import logging
import math
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from sqlalchemy.orm import Session, sessionmaker

from contract.spec import flatten
from store import rungs, sweeps
from store.db import transaction
from store.sweep_table import TrialRow, best_of, trial_rows
from store.tables import FINAL_STATUSES, Job, Sweep, utcnow
from workers import artifacts, mlflow_retry, registry, sweep_artifacts, tracking

log = logging.getLogger(__name__)

SWEEP_TAG = "gradq.sweep_id"  # on the parent and on each child
ROLE_TAG = "gradq.role"  # "sweep" on the parent
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests the child under it
MAX_CURVE_POINTS = 500  # a curve in the overlay: more points than that add no pixel
_final_curves: dict[tuple[str, str], list[tuple[int, float]]] = {}  # never change once ended
MAX_CACHED_CURVES = 5000
_artifact_uris: dict[tuple[str, str], str] = {}  # a parent run's, asked once


def parent_run(client: MlflowClient, factory: sessionmaker[Session], sweep_id: str) -> str:
    """The sweep's parent run: the one SQL records, or else one found by its tags (made by an
    attempt that died before recording it) or made now, then recorded. Two trials starting at
    once may each make one: the first recorded wins, the other is deleted."""
    with transaction(factory) as session:
        sweep = session.get(Sweep, sweep_id)
        recorded, experiment = sweep.mlflow_run_id, sweep.experiment
    if recorded is not None:
        return recorded
    found = _tagged_parent(client, experiment, sweep_id)
    run_id = (
        found
        or tracking.start_run(
            client,
            experiment=experiment,
            run_name=f"sweep-{sweep_id[:8]}",
            tags={SWEEP_TAG: sweep_id, ROLE_TAG: "sweep"},
        ).run_id
    )
    with transaction(factory) as session:
        recorded = sweeps.record_parent_run(session, sweep_id, run_id)
    if recorded != run_id and found is None:
        with suppress(Exception):
            client.delete_run(run_id)
    return recorded


def child_tags(client: MlflowClient, factory: sessionmaker[Session], sweep_id: str) -> dict:
    """The tags that make a trial's run a child of its sweep's parent run."""
    return {PARENT_TAG: parent_run(client, factory, sweep_id), SWEEP_TAG: sweep_id}


def _tagged_parent(client: MlflowClient, experiment: str, sweep_id: str) -> str | None:
    runs = client.search_runs(
        [tracking.experiment_id(client, experiment)],
        filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_id}' and tags.`{ROLE_TAG}` = 'sweep'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def sync_parents(factory: sessionmaker[Session], client: MlflowClient) -> list[str]:
    """Bring every parent run that is behind up to date (the reconciler's pass); returns the
    sweeps synced. MLflow down: the rest wait for the next pass."""
    with transaction(factory) as session:
        due = sweeps.parents_to_sync(session)
    synced = []
    for sweep_id in due:
        try:
            sync_parent(factory, client, sweep_id)
        except Exception as error:
            log.warning("sweep %s: parent run not updated: %s", sweep_id, error)
            if mlflow_retry.unreachable(error):
                break
            continue
        synced.append(sweep_id)
    return synced


@dataclass
class Snapshot:
    """A sweep as SQL has it at one moment: what its parent run is to show."""

    run_id: str
    summary: dict  # sweep id, status, the varied paths, objective, best job and value
    rows: list[TrialRow]
    best_trial: Job | None
    ranking: registry.Ranking | None  # how the best is ranked, for the registry
    register_as: str | None

    @property
    def ended(self) -> bool:
        return self.summary["status"] in tracking.RUN_STATUS  # every trial has ended


def sync_parent(factory: sessionmaker[Session], client: MlflowClient, sweep_id: str) -> None:
    """Show the trials' state on the parent run as SQL has it now; end the run (with the best
    trial's params, and its model registered if asked) once every trial has ended."""
    read_at = utcnow()  # a trial that ends after this is shown by the next sync
    snapshot = read_snapshot(factory, sweep_id)
    best = snapshot.best_trial
    if best is not None:
        log_best(client, snapshot, best)
    upload_tables(client, snapshot)
    if snapshot.ended:
        if snapshot.register_as and best is not None:
            register_best(client, snapshot.register_as, best.id, best.mlflow_run_id,
                          snapshot.ranking)  # fmt: skip
        tracking.end_run(client, snapshot.run_id, snapshot.summary["status"])
    with transaction(factory) as session:
        sweeps.mark_parent_synced(session, sweep_id, read_at, closed=snapshot.ended)


def read_snapshot(factory: sessionmaker[Session], sweep_id: str) -> Snapshot:
    with transaction(factory) as session:
        sweep = session.get(Sweep, sweep_id)
        trials = sweeps.trials_of(session, sweep_id)
        rows = trial_rows(sweep, trials, rungs.rungs_of(session, sweep_id), lambda t: t.error)
        best = best_of(sweep, rows)
        objective = {"metric": sweep.objective_metric, "goal": sweep.objective_goal}
        summary = {
            "sweep_id": sweep.id,
            "status": sweeps.sweep_status(sweep, [trial.status for trial in trials]),
            "space": list(sweep.request["space"]), "objective": objective,
            "best_job": best.job_id if best else None,
            "best_value": best.objective if best else None,
        }  # fmt: skip
        return Snapshot(
            run_id=sweep.mlflow_run_id,
            summary=summary,
            rows=rows,
            best_trial=next((t for t in trials if best and t.id == best.job_id), None),
            ranking=registry.Ranking(**objective, value=best.objective) if best else None,
            register_as=sweep.request.get("register_as"),
        )


def log_best(client: MlflowClient, snapshot: Snapshot, best: Job) -> None:
    """The best trial's final metrics on the parent (at the step of the trials ended so far),
    tags naming it, and once the sweep has ended its params."""
    ended = sum(1 for row in snapshot.rows if row.status in FINAL_STATUSES)
    final = {k: v for k, v in (best.metrics or {}).items() if _is_number(v)}
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, ended) for k, v in final.items()]
    client.log_batch(snapshot.run_id, metrics=metrics)
    tracking.log_params_and_tags(
        client,
        snapshot.run_id,
        flatten(best.spec) if snapshot.ended else {},  # params cannot change once logged
        {"gradq.best_job": best.id, "gradq.best_run": best.mlflow_run_id or ""},
    )


def upload_tables(client: MlflowClient, snapshot: Snapshot) -> None:
    """trials.json, trials.md and cost_curves.png (the ended trials' curves) to the parent."""
    rows = snapshot.rows
    ended = [row for row in rows if row.status in FINAL_STATUSES and row.mlflow_run_id]
    curves = {row.job_id: _curve(client, row.mlflow_run_id) for row in ended}
    with tempfile.TemporaryDirectory(prefix="gradq-sweep-") as folder:
        path = Path(folder)
        (path / "trials.json").write_text(sweep_artifacts.trials_document(snapshot.summary, rows))
        (path / "trials.md").write_text(sweep_artifacts.trials_markdown(snapshot.summary, rows))
        best = snapshot.summary["best_job"]
        sweep_artifacts.plot_trial_curves(curves, rows, best, path / "cost_curves.png")
        artifacts.upload(client, [(_artifact_uri(client, snapshot.run_id), folder)])


def register_best(
    client: MlflowClient, name: str, job_id: str, run_id: str, ranking: registry.Ranking
) -> None:
    """Register the best trial's LoggedModel (its run's output) under the sweep's name."""
    [output] = client.get_run(run_id).outputs.model_outputs
    registry.register(client, name, output.model_id, run_id, job_id, ranking)


def _artifact_uri(client: MlflowClient, run_id: str) -> str:
    """A parent run's artifact URI, asked of MLflow once per process: it never changes."""
    key = (client.tracking_uri, run_id)
    if key not in _artifact_uris:
        if len(_artifact_uris) >= MAX_CACHED_CURVES:
            _artifact_uris.clear()
        _artifact_uris[key] = client.get_run(run_id).info.artifact_uri
    return _artifact_uris[key]


def _curve(client: MlflowClient, run_id: str) -> list[tuple[int, float]]:
    """An ended trial's cost per epoch, at most MAX_CURVE_POINTS of them; read from MLflow
    once per process (it never changes again)."""
    key = (client.tracking_uri, run_id)
    if key not in _final_curves:
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "cost"))
        stride = max(1, len(points) // MAX_CURVE_POINTS)
        if len(_final_curves) >= MAX_CACHED_CURVES:
            _final_curves.clear()
        _final_curves[key] = points[::stride]
    return _final_curves[key]


def _is_number(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
