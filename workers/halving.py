"""A sweep trial's successive halving, as a training callback: at each rung but the last, the
verdict stored in SQL (store/sweeps.py ``reach_rung``) says whether training goes on. A
promoted trial simply trains on, in the same process and MLflow run: no rung retrains what an
earlier one did."""

import logging
import math

from mlflow.entities import RunTag
from sqlalchemy.orm import Session

from contract.halving import Halving, Verdict, check_rungs
from store import sweeps
from store.db import in_transaction_retrying, transaction
from store.tables import Sweep
from workers import mlflow_retry
from workers.attempt import AttemptContext

log = logging.getLogger(__name__)


class RungJudge:
    """``on_epoch_end`` asks for the verdict at a rung's epoch; ``stopped`` is the verdict
    that stopped the trial, if one did."""

    def __init__(self, context: AttemptContext, sweep: Sweep):
        self.context, self.sweep = context, sweep
        halving = Halving.model_validate(sweep.request["halving"])
        check_rungs(context.attempt.spec.training.epochs, halving)  # as the API did
        self.rungs = {done: k + 1 for k, done in enumerate(halving.rungs)}  # {epochs done: rung}
        self.stopped: Verdict | None = None

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        rung = self.rungs.get(epoch + 1)
        if rung is None:
            return
        value = metrics.get(self.sweep.objective_metric, math.nan)
        job_id = self.context.attempt.job_id

        def reach(session: Session) -> Verdict:
            return sweeps.reach_rung(session, self.sweep, job_id, rung, epoch + 1, value)

        verdict = in_transaction_retrying(
            self.context.session_factory, reach, self.context.settings.lease_seconds
        )
        log.info("job %s %s", job_id, verdict.reason(self.sweep.objective_metric))
        if not verdict.promoted:
            self.stopped = verdict

    def should_stop(self) -> bool:
        return self.stopped is not None

    def reason(self) -> str:
        return self.stopped.reason(self.sweep.objective_metric)

    def tag_run(self) -> None:
        """The stopping verdict as tags of the run, for the MLflow UI's columns; a failure is
        logged, not raised: the job's end in SQL must still be written."""
        verdict, run = self.stopped, self.context.run
        tags = {
            "gradq.stopped_at_rung": str(verdict.rung),
            "gradq.rung_epoch": str(verdict.epoch),
            "gradq.rung_value": f"{verdict.value:.6g}",
            "gradq.rung_cutoff": f"{verdict.cutoff:.6g}",
            "gradq.rung_rank": f"{verdict.rank} of {verdict.reached}",
        }
        try:
            mlflow_retry.wait_for(
                lambda: self.context.client.log_batch(
                    run.run_id, tags=[RunTag(k, v) for k, v in tags.items()]
                ),
                self.context.settings.mlflow_wait_seconds,
                "tag the stopped trial",
            )
        except Exception as error:
            log.warning("run %s: halving tags not set: %s", run.run_id, error)


def judge_for(context: AttemptContext) -> RungJudge | None:
    """The attempt's judge when its job is a trial of a sweep with halving, else None."""
    sweep_id = context.attempt.sweep_id
    if sweep_id is None:
        return None
    with transaction(context.session_factory) as session:
        sweep = session.get(Sweep, sweep_id)
        if sweep is None or not sweep.request.get("halving"):
            return None
        session.expunge(sweep)  # read after the session ends: request and objective only
    return RungJudge(context, sweep)
