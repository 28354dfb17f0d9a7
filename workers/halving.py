"""A sweep trial's successive halving in the worker: at each rung but the last, a training
callback asks SQL for the verdict (store/rungs.py ``reach_rung``). Promoted, the trial trains
on in the same process and MLflow run. Waiting, it is handed back with its checkpoint at the
rung, and resumes from it, in the same run, once a later arrival promotes it. Stopped, it ends
cancelled with the reason. No rung retrains what an earlier one did.

A trial's LoggedModel is made only once it is past its last rung (``Deferred``): one stopped or
waiting at a rung never has one to leave behind."""

import logging
import math
from collections.abc import Callable

from mlflow.entities import RunTag
from sqlalchemy.orm import Session

from contract.halving import Halving, Verdict, check_rungs, stop_tags
from models.serialization import Checkpoint
from store import rungs
from store.db import in_transaction_retrying, transaction
from store.jobs import mark_undispatched
from store.tables import Sweep
from workers import mlflow_retry
from workers.artifacts import RunArtifacts
from workers.attempt import AttemptContext
from workers.background import in_background
from workers.checkpoints import store_for

log = logging.getLogger(__name__)


class Deferred:
    """RunArtifacts made on the first ``start()``; ``close`` is a no-op until then."""

    def __init__(self, make: Callable[[], RunArtifacts]):
        self._make, self._made = make, None

    def start(self) -> RunArtifacts:
        if self._made is None:
            self._made = self._make()
        return self._made

    def close(self, discard_model: bool = False) -> None:
        if self._made is not None:
            self._made.close(discard_model=discard_model)


class RungJudge:
    """``on_epoch_end`` asks for the verdict at a rung's epoch; ``stopped`` is the verdict
    that stopped training (waiting or stopped), if one did; ``past_last_rung`` is called once
    the trial is promoted at its last rung."""

    def __init__(self, context: AttemptContext, sweep: Sweep):
        self.context, self.sweep = context, sweep
        halving = Halving.model_validate(sweep.request["halving"])
        check_rungs(context.attempt.spec.training.epochs, halving)  # as the API did
        self.rungs = {done: k + 1 for k, done in enumerate(halving.rungs)}  # {epochs done: rung}
        self.last_rung_epoch = halving.rungs[-1]
        self.stopped: Verdict | None = None
        self.past_last_rung: Callable[[], object] = lambda: None

    def is_past_last_rung(self, resume: Checkpoint | None) -> bool:
        return resume is not None and resume.epoch >= self.last_rung_epoch

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        rung = self.rungs.get(epoch + 1)
        if rung is None:
            return
        value = metrics.get(self.sweep.objective_metric, math.nan)
        job_id = self.context.attempt.job_id

        def reach(session: Session) -> tuple[Verdict, rungs.Settled]:
            return rungs.reach_rung(session, self.sweep, job_id, rung, epoch + 1, value)

        verdict, settled = in_transaction_retrying(
            self.context.session_factory, reach, self.context.settings.lease_seconds
        )
        act_on(self.context, settled)
        log.info("job %s %s", job_id, verdict.reason(self.sweep.objective_metric))
        if not verdict.promoted:
            self.stopped = verdict
        elif epoch + 1 == self.last_rung_epoch:
            self.past_last_rung()

    def should_stop(self) -> bool:
        return self.stopped is not None

    @property
    def waiting(self) -> bool:
        return self.stopped is not None and self.stopped.state == "waiting"

    def reason(self) -> str:
        return self.stopped.reason(self.sweep.objective_metric)

    def tag_run(self) -> None:
        """The stopping verdict as tags of the run, for the MLflow UI's columns; a failure is
        logged, not raised: the job's end in SQL must still be written."""
        run = self.context.run
        tags = [RunTag(k, v) for k, v in stop_tags(self.stopped).items()]
        try:
            mlflow_retry.wait_for(
                lambda: self.context.client.log_batch(run.run_id, tags=tags),
                self.context.settings.mlflow_wait_seconds,
                "tag the stopped trial",
            )
        except Exception as error:
            log.warning("run %s: halving tags not set: %s", run.run_id, error)


def judge_for(context: AttemptContext) -> RungJudge | None:
    """The attempt's judge when its job is a trial of a sweep with halving, else None."""
    sweep = _halving_sweep(context)
    return None if sweep is None else RungJudge(context, sweep)


def after_attempt(context: AttemptContext, status: str | None) -> None:
    """Once a trial of a sweep with halving has ended or been handed back: settle its sweep's
    rungs (its end may complete one) and send the trials that promoted. A trial handed back
    waiting, but promoted meanwhile, is sent again too. A failure is logged: the reconciler
    settles the sweep on its next pass."""
    if status not in ("queued", "succeeded", "failed", "cancelled"):
        return
    sweep = _halving_sweep(context)
    if sweep is None:
        return
    job_id = context.attempt.job_id

    def settle(session: Session) -> rungs.Settled:
        settled = rungs.settle(session, sweep)
        # Only a pause: a hand-back for a stopping worker waits for the reconciler's send.
        paused = status == "queued" and context.paused_at_rung
        if paused and rungs.send_again_if_promoted(session, job_id):
            settled.released.append(job_id)
        return settled

    try:
        settled = in_transaction_retrying(
            context.session_factory, settle, context.settings.lease_seconds
        )
    except Exception:
        log.exception("sweep %s not settled after job %s", sweep.id, job_id)
        return
    act_on(context, settled)


def act_on(context: AttemptContext, settled: rungs.Settled) -> None:
    """After the commit: send the promoted trials' messages (without a way to send, run_job
    called on its own, they are left to the reconciler: the outbox, dispatched_at cleared),
    and drop the stopped ones' checkpoints, in the background. Errors are logged: the arriving
    trial goes on, and a message not sent is sent again as any stale one is."""
    if settled.stopped:
        checkpoints = store_for(context.settings)
        in_background("discard checkpoints", lambda: [checkpoints.discard(job_id)
                                                      for job_id in settled.stopped])  # fmt: skip
    if not settled.released:
        return
    try:
        if context.send is not None:
            for job_id in settled.released:
                context.send(job_id)
            return
        with transaction(context.session_factory) as session:
            for job_id in settled.released:
                mark_undispatched(session, job_id)
    except Exception:
        log.exception("promoted trials %s not sent", settled.released)


def _halving_sweep(context: AttemptContext) -> Sweep | None:
    sweep_id = context.attempt.sweep_id
    if sweep_id is None:
        return None
    with transaction(context.session_factory) as session:
        sweep = session.get(Sweep, sweep_id)
        if sweep is None or not sweep.request.get("halving"):
            return None
        session.expunge(sweep)  # read after the session ends: request and objective only
    return sweep
