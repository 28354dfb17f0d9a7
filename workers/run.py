"""One attempt at one job, as plain functions: claim, load the data, train, record the outcome.

SQL holds the job's life (claim, heartbeats, the final status), MLflow what it learned; the
Celery task only calls ``run_job``. Every SQL write is a short transaction of its own: none is
held open across training or a call to MLflow.
"""

import logging
import time
from collections.abc import Callable
from concurrent import futures
from contextlib import closing
from functools import partial
from typing import Any

from mlflow.tracking import MlflowClient
from sqlalchemy.orm import Session, sessionmaker

import logs
from contract.network_shape import network_shape
from contract.spec import JobSpec
from models import (
    DivergenceError,
    GradientCheckStopped,
    Network,
    TrainingStopped,
    train,
)
from models.serialization import Checkpoint
from settings import Settings
from store.tables import FINAL_STATUSES
from workers import (
    artifacts,
    blas_threads,
    halving,
    metrics_spool,
    mlflow_process,
    mlflow_retry,
    registry,
    tracking,
)
from workers.attempt import AttemptContext, claim, log_data_to_run, start_or_resume
from workers.background import in_background
from workers.checkpoints import store_for
from workers.checkpoints.writer import CheckpointWriter
from workers.data import TrainingData, load_training_data
from workers.final_metrics import best_metrics, final_metrics, mlflow_final_metrics
from workers.heartbeat import Heartbeat
from workers.initial_check import initial_gradient_check
from workers.outcome import record_outcome, stopped_before_training

log = logging.getLogger(__name__)


def run_job(
    job_id: str,
    settings: Settings,
    session_factory: sessionmaker[Session],
    owner: str,
    send: Callable[[str], None] | None = None,
) -> str | None:
    """Run job ``job_id`` as ``owner``, resuming from its newest checkpoint if an earlier
    attempt left one. Returns its final status; "queued" when it was handed back (the worker
    is shutting down: the reconciler sends it again; or a sweep's trial waits at a rung);
    None when there was nothing to do (another worker holds it, or it is finished) or the
    lease was lost. ``send(job_id)`` publishes the messages of trials its halving promotes
    (None: the reconciler does)."""
    attempt = claim(job_id, settings, session_factory, owner)
    if attempt is None:
        return None
    logs.set_attempt(attempt.number)
    started = time.perf_counter()
    heartbeat = Heartbeat(session_factory, job_id, owner, settings).start()
    client = MlflowClient(settings.mlflow_tracking_uri)
    context = AttemptContext(attempt, settings, session_factory, client, heartbeat, send=send)
    phase = attempt.phases
    try:
        # The run is made (a round trip to MLflow) while this thread loads the data and checks
        # the initial network's gradient: training starts after both.
        starting = in_background(
            "start run", start_or_resume, client, attempt, settings, session_factory
        )
        try:
            with phase("data"):
                data = load_training_data(attempt.spec, settings, session_factory)
            net = build_network(attempt.spec, data)
            with phase("gradient check"):
                check = initial_gradient_check(
                    net, data, attempt.spec.training.l2, heartbeat.should_stop
                )
        except Exception:
            context.run, context.buffer = started_run(starting)  # ended as the job ends below
            raise
        with phase("mlflow run"):  # what is left of it
            context.run, context.buffer, resume = starting.result()
        heartbeat.spool = context.buffer  # its depth goes to SQL with each beat (/metrics)
        context.buffer.add(0, {"gradient_check": check})  # not sent again by a resumed run
        outcome, metrics, error = train_and_record(context, data, net, resume)
        if outcome == "succeeded":
            with phase("mlflow end"):  # a success whose metrics did not all reach MLflow is not one
                mlflow_retry.wait_for(
                    context.buffer.close, settings.mlflow_wait_seconds, "send metrics"
                )
    except GradientCheckStopped:
        outcome, metrics, error = stopped_before_training(heartbeat)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        outcome, metrics, error = "failed", None, f"{type(exc).__name__}: {exc}"
    # The heartbeat goes on until the outcome is in SQL: closing the run may wait on MLflow.
    try:
        heartbeat.beat()  # the last epoch's progress
        status = record_outcome(context, outcome, metrics, error)
    finally:
        heartbeat.close(final_beat=False)
    if status in FINAL_STATUSES:  # not when another worker holds the job now
        store_for(settings).discard(job_id)
    halving.after_attempt(context, status)
    log.info("job %s %s in %.3f s: %s", job_id, status, time.perf_counter() - started, phase)
    return status


def started_run(
    starting: futures.Future,
) -> tuple[tracking.RunRef | None, metrics_spool.MetricsBuffer | None]:
    """The run and buffer that ``start_or_resume`` made in the background, once it is done;
    (None, None) if it failed."""
    try:
        run, buffer, _ = starting.result()
    except Exception:  # logged by in_background
        return None, None
    return run, buffer


Ended = tuple[str, dict[str, Any] | None, str | None]  # outcome, final metrics, error


def train_and_record(
    context: AttemptContext, data: TrainingData, net: Network, resume: Checkpoint | None
) -> Ended:
    """Train, then record the final metrics and artifacts. The outcome is "lost" if the lease
    was lost, "queued" if the job is to be handed back (its checkpoint is written)."""
    attempt, settings, run = context.attempt, context.settings, context.run
    # Params, and the artifacts' first part, go up while the network trains.
    params = in_background(
        "log params",
        mlflow_retry.wait_for,
        lambda: log_data_to_run(context.client, run.run_id, attempt, data),
        settings.mlflow_wait_seconds,
        "log params",
    )
    part = artifacts.FirstPart.of(
        net, attempt.spec, data.dataset.classes, data.m_train, data.X_train[:, 0]
    )
    uploads = halving.Deferred(
        partial(
            artifacts.RunArtifacts,
            context.client,
            run,
            part,
            job_id=attempt.job_id,
            resumed=attempt.number > 1,
            sender=mlflow_process.for_settings(settings),
        )
    )
    rungs = halving.judge_for(context)  # a trial of a sweep with successive halving
    if rungs is None or rungs.is_past_last_rung(resume):
        with attempt.phases("mlflow artifacts"):
            uploads.start()
    else:  # a trial stopped or waiting at a rung has no model to leave behind
        rungs.past_last_rung = uploads.start
    writer = CheckpointWriter(
        store_for(settings),
        context.session_factory,
        attempt.job_id,
        attempt.owner,
        lambda: context.heartbeat.lease_lost,
        epochs=attempt.spec.training.epochs,
    )
    ended: Ended = ("failed", None, None)  # until the attempt says otherwise
    try:
        # The writer is closed once the attempt is over: the last epoch's checkpoint is
        # written beside the final metrics and artifacts, not before them.
        with closing(writer):
            started = time.perf_counter()
            try:
                history = train_network(context, data, net, resume, writer, rungs)
            except TrainingStopped as stopped:
                ended = stopped_training(context, stopped, writer, rungs)
                return ended
            except DivergenceError as error:
                ended = "failed", None, f"{error}; lower training.learning_rate"
                return ended
            seconds = time.perf_counter() - started
            ended = record_trained(context, data, net, history, seconds, params, uploads.start())
            return ended
    finally:
        # A model only for a success; a job handed back (queued) or held by another worker
        # (lost) still trains the one it has.
        uploads.close(discard_model=ended[0] in ("failed", "cancelled"))


def train_network(
    context: AttemptContext,
    data: TrainingData,
    net: Network,
    resume: Checkpoint | None,
    writer: CheckpointWriter,
    rungs: halving.RungJudge | None = None,
) -> dict[str, list[float]]:
    """models.train on the job's spec, its metrics, heartbeat and checkpoints as callbacks,
    and a sweep's halving judge, if any, after them (a rung's epoch is logged first)."""
    training, heartbeat = context.attempt.spec.training, context.heartbeat
    batch = training.batch_size or data.m_train
    judges = [heartbeat, *([rungs] if rungs else [])]  # each may ask training to stop
    with context.attempt.phases("training"), blas_threads.for_training(net.layer_dims, batch):
        return train(
            net,
            data.X_train,
            data.Y_train,
            X_val=data.X_val,
            Y_val=data.Y_val,
            callbacks=[context.buffer, writer, *judges],
            should_stop=lambda: any(judge.should_stop() for judge in judges),
            resume_from=resume,
            **training.train_options(),
        )


def stopped_training(
    context: AttemptContext,
    stopped: TrainingStopped,
    writer: CheckpointWriter,
    rungs: halving.RungJudge | None = None,
) -> Ended:
    """A stop between epochs: a cancel, a trial stopped at a rung of its sweep, or a hand-back
    with its checkpoint written (the worker is stopping, or the trial waits at a rung)."""
    reason = context.heartbeat.stop_reason()
    if reason != "lost" and rungs is not None and rungs.should_stop():
        if rungs.waiting:
            context.paused_at_rung = True
            return hand_back_with_checkpoint(writer, stopped, rungs.reason())
        rungs.tag_run()
        return "cancelled", None, rungs.reason()
    if reason != "handoff":
        return reason, None, None
    detail = f"handed back at epoch {stopped.checkpoint.epoch}: worker stopping"
    return hand_back_with_checkpoint(writer, stopped, detail)


def hand_back_with_checkpoint(
    writer: CheckpointWriter, stopped: TrainingStopped, detail: str
) -> Ended:
    """The stop's checkpoint written, the outcome that hands the job back to the queue."""
    writer.close()  # the checkpoint pending, if any, first: the stop's must be the newest
    # If the stop's checkpoint could not be saved, the next attempt resumes from the last one
    # that was (or from the start): work is lost, never the job, and the event says so.
    epoch = stopped.checkpoint.epoch
    # Not twice when the stop came at a checkpoint's epoch (the one close just wrote).
    if writer.saved_epoch != epoch and not writer.save(stopped.checkpoint):
        detail += f"; checkpoint at epoch {epoch} not saved"
    return "queued", None, detail


def record_trained(
    context: AttemptContext,
    data: TrainingData,
    net: Network,
    history: dict[str, list[float]],
    seconds: float,
    params: futures.Future,
    uploads: artifacts.RunArtifacts,
) -> Ended:
    """The trained network's final metrics, and its artifacts once the params are logged."""
    attempt, settings, phase = context.attempt, context.settings, context.attempt.phases
    training = attempt.spec.training
    metrics = final_metrics(net, data, training.l2, training.batch_size)
    # Linked to the run's LoggedModel: its metrics in the Models tab.
    model_id = mlflow_retry.wait_for(uploads.model_id, settings.mlflow_wait_seconds, "model")
    context.buffer.add(training.epochs, mlflow_final_metrics(metrics), model_id)
    context.buffer.flush_soon()  # stored by the server while the artifacts are drawn
    with phase("mlflow params"):  # a run without them never gets a model (MLmodel) either
        # wait_for gives up after mlflow_wait_seconds; a call it makes, after its timeout.
        params.result(timeout=settings.mlflow_wait_seconds + 4 * settings.mlflow_timeout_seconds)
    with phase("mlflow artifacts"):
        title = attempt.spec.name or attempt.spec.experiment
        mlflow_retry.wait_for(
            lambda: uploads.finish(net, history, title),
            settings.mlflow_wait_seconds,
            "log artifacts",
        )
    if attempt.spec.register_as:
        with phase("mlflow registry"):
            mlflow_retry.wait_for(
                lambda: registry.register(
                    context.client, attempt.spec.register_as, model_id, context.run.run_id,
                    attempt.job_id, registry.job_ranking(metrics),
                ),
                settings.mlflow_wait_seconds,
                "register the model",
            )  # fmt: skip
    best = best_metrics(history, metrics)  # for a sweep's trials table
    return "succeeded", {**metrics, **best, "training_seconds": round(seconds, 6)}, None


def build_network(spec: JobSpec, data: TrainingData) -> Network:
    """The spec's network for the data, by the rules the API validated the spec with."""
    dataset = data.dataset
    shape = network_shape(spec.model, dataset.n_x, dataset.num_classes, spec.dataset.name)
    return Network(
        layer_dims=shape.layer_dims,
        hidden_activation=shape.hidden_activation,
        output=shape.output,
        init=shape.init,
        seed=spec.training.seed,
        dtype=spec.training.dtype,
    )
