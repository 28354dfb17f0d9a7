"""How an attempt ends, in MLflow and then in SQL: succeeded, failed or cancelled; handed back
to the queue with its checkpoint written; or left to the worker that took its lease."""

import logging
from typing import Any

from sqlalchemy.orm import Session

import store.jobs
from store.db import in_transaction_retrying
from workers import metrics_spool, tracking
from workers.attempt import AttemptContext
from workers.heartbeat import Heartbeat

log = logging.getLogger(__name__)


def record_outcome(
    context: AttemptContext, outcome: str, metrics: dict[str, Any] | None, error: str | None
) -> str | None:
    """End the attempt in MLflow and SQL as ``outcome`` says; returns what run_job does."""
    attempt = context.attempt
    if outcome == "lost":
        log.warning("job %s: lease lost to another worker; leaving the job to it", attempt.job_id)
        if context.buffer is not None:
            context.buffer.discard()  # the new owner sends these steps: never twice
        return None
    if outcome == "queued":
        return hand_back(context, error)
    with attempt.phases("mlflow end"):
        closed, undelivered = close_tracking(context, outcome, error)

    def record(session: Session) -> bool:
        return store.jobs.finish(
            session,
            attempt.job_id,
            attempt.owner,
            outcome,
            metrics=metrics,
            error=error,
            mlflow_closed=closed,
            metrics_undelivered=undelivered,
        )

    lease = context.settings.lease_seconds
    if not in_transaction_retrying(context.session_factory, record, lease):
        log.warning("job %s: not %s in SQL, its lease was lost meanwhile", attempt.job_id, outcome)
        return None
    return outcome


def stopped_before_training(heartbeat: Heartbeat) -> tuple[str, None, str | None]:
    """(outcome, metrics, error) of an attempt stopped during its gradient check."""
    reason = heartbeat.stop_reason() or "cancelled"
    if reason == "handoff":
        return "queued", None, "handed back before training: worker stopping"
    return reason, None, None


def hand_back(context: AttemptContext, detail: str) -> str | None:
    """Queue the job again after its checkpoint was written: metrics sent (those that cannot
    be are in the checkpoint's history), the run SCHEDULED rather than RUNNING. Returns the
    job's status: "queued", or "cancelled" if a cancel came first (the reconciler then ends
    the run KILLED)."""
    attempt, run, buffer = context.attempt, context.run, context.buffer
    try:
        if buffer is not None:
            buffer.close()
        if run is not None:
            tracking.mark_scheduled(context.client, run.run_id)
    except Exception as error:
        log.warning("job %s: MLflow not updated before hand-back: %s", attempt.job_id, error)
    undelivered = buffer.undelivered if buffer is not None else 0

    def release(session: Session) -> str | None:
        return store.jobs.release(session, attempt.job_id, attempt.owner, detail, undelivered)

    lease = context.settings.lease_seconds
    status = in_transaction_retrying(context.session_factory, release, lease)
    log.info("job %s %s: %s", attempt.job_id, detail, status or "lease lost meanwhile")
    return status


def close_tracking(context: AttemptContext, outcome: str, error: str | None) -> tuple[bool, int]:
    """Send the last metrics and end the run with the outcome's status (tagged
    gradq.metrics_incomplete if values never reached MLflow). Returns (done, the values not
    delivered). A failure here is logged, not raised: the job's outcome in SQL must still be
    written, and the reconciler ends the run when MLflow answers again."""
    client, run, buffer = context.client, context.run, context.buffer
    if run is None:
        return True, 0
    undelivered = 0
    try:
        if buffer is not None:
            try:
                buffer.close()
            finally:
                undelivered = buffer.undelivered
        if undelivered:
            log.warning("run %s: %d metric values not delivered", run.run_id, undelivered)
            incomplete = store.jobs.undelivered_values(undelivered)
            client.set_tag(run.run_id, metrics_spool.METRICS_INCOMPLETE_TAG, incomplete)
        if error:
            client.set_tag(run.run_id, "gradq.error", error[:5000])
        tracking.end_run(client, run.run_id, outcome)
    except Exception:
        log.exception("could not close MLflow run %s; the reconciler will", run.run_id)
        return False, undelivered
    return True, undelivered
