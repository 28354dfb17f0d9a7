"""One attempt at one job, as plain functions: claim, load the data, train, record the outcome.

SQL holds the job's life (claim, heartbeats, the final status), MLflow what it learned; the
Celery task only calls ``run_job``. Every SQL write is a short transaction of its own: none is
held open across training or a call to MLflow.
"""

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import logs
import store.jobs
from models import (
    DivergenceError,
    GradientCheckStopped,
    Network,
    TrainingStopped,
    gradient_check,
    train,
)
from models.serialization import Checkpoint
from settings import Settings
from store.db import in_transaction_retrying, transaction
from store.spec import JobSpec
from store.tables import FINAL_STATUSES, Job
from workers import artifacts, blas_threads, mlflow_process, tracking
from workers.attempt import Attempt, claim, log_data_to_run, start_or_resume
from workers.checkpoint_artifacts import ArtifactCheckpointStore
from workers.checkpoints import CheckpointStore, store_for
from workers.data import TrainingData, load_training_data
from workers.progress import Progress

log = logging.getLogger(__name__)

GRADIENT_CHECK_EXAMPLES = 5
GRADIENT_CHECK_PER_PARAMETER = 20
# Entries checked in all: each costs two forward passes of the examples through the whole
# network, so a big network gets fewer, within about GRADIENT_CHECK_WORK multiply-adds.
GRADIENT_CHECK_MAX_ENTRIES = 200
GRADIENT_CHECK_MIN_ENTRIES = 4
GRADIENT_CHECK_WORK = 10**9


def run_job(
    job_id: str, settings: Settings, session_factory: sessionmaker[Session], owner: str
) -> str | None:
    """Run job ``job_id`` as ``owner``, resuming from its newest checkpoint if an earlier
    attempt left one. Returns its final status; "queued" when it was handed back (the worker
    is shutting down: the reconciler sends it again); None when there was nothing to do
    (another worker holds it, or it is finished) or the lease was lost."""
    attempt = claim(job_id, settings, session_factory, owner)
    if attempt is None:
        return None
    logs.set_attempt(attempt.number)
    client = MlflowClient(settings.mlflow_tracking_uri)
    checkpoints = store_for(settings)
    started = time.perf_counter()
    phase = attempt.phases
    run: tracking.RunRef | None = None
    buffer: tracking.MetricsBuffer | None = None
    progress = Progress(session_factory, job_id, owner, settings).start()
    try:
        # The run is made (a round trip to MLflow, ~20 ms) while this thread loads the data and
        # checks the initial network's gradient (~20 ms of CPU): training starts after both.
        starting = in_background(
            "start run", start_or_resume, client, attempt, settings, session_factory
        )
        try:
            with phase("data"):
                data = load_training_data(attempt.spec, settings, session_factory)
            net = build_network(attempt.spec, data)
            with phase("gradient check"):
                check = initial_gradient_check(
                    net, data, attempt.spec.training.l2, progress.should_stop
                )
        except Exception:
            run, buffer = started_run(starting)  # if made, ended as the job ends below
            raise
        with phase("mlflow run"):  # what is left of it
            run, buffer, resume = starting.result()
        progress.spool = buffer  # its depth goes to SQL with each beat (/metrics)
        buffer.add(0, {"gradient_check": check})  # not sent again by a resumed run
        outcome, metrics, error = train_and_record(
            attempt, data, net, settings, session_factory, client, run, buffer, resume, progress
        )
        if outcome == "succeeded":
            with phase("mlflow end"):  # a success whose metrics did not all reach MLflow is not one
                tracking.wait_for(buffer.close, settings.mlflow_wait_seconds, "send metrics")
    except GradientCheckStopped:
        outcome, metrics, error = stopped_before_training(progress)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        outcome, metrics, error = "failed", None, f"{type(exc).__name__}: {exc}"
    # The heartbeat goes on until the outcome is in SQL: closing the run may wait on MLflow.
    try:
        progress.beat()  # the last epoch's progress
        status = record_outcome(
            outcome, metrics, error, attempt, settings, session_factory, client, run, buffer
        )
    finally:
        progress.close(final_beat=False)
    if status in FINAL_STATUSES:  # not when another worker holds the job now
        checkpoints.discard(job_id)
    log.info("job %s %s in %.3f s: %s", job_id, status, time.perf_counter() - started, phase)
    return status


def record_outcome(
    outcome: str,
    metrics: dict[str, Any] | None,
    error: str | None,
    attempt: Attempt,
    settings: Settings,
    session_factory: sessionmaker[Session],
    client: MlflowClient,
    run: tracking.RunRef | None,
    buffer: tracking.MetricsBuffer | None,
) -> str | None:
    """End the attempt in MLflow and SQL as ``outcome`` says; returns what run_job does."""
    if outcome == "lost":
        log.warning("job %s: lease lost to another worker; leaving the job to it", attempt.job_id)
        if buffer is not None:
            buffer.discard()  # the new owner sends these steps: never twice
        return None
    if outcome == "queued":
        return hand_back(client, run, buffer, attempt, settings, session_factory, error)
    with attempt.phases("mlflow end"):
        closed, undelivered = close_tracking(client, run, buffer, outcome, error)

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

    if not in_transaction_retrying(session_factory, record, settings.lease_seconds):
        log.warning("job %s: not %s in SQL, its lease was lost meanwhile", attempt.job_id, outcome)
        return None
    return outcome


def started_run(
    starting: futures.Future,
) -> tuple[tracking.RunRef | None, tracking.MetricsBuffer | None]:
    """The run and buffer that ``start_or_resume`` made in the background, once it is done;
    (None, None) if it failed."""
    try:
        run, buffer, _ = starting.result()
    except Exception:  # logged by in_background
        return None, None
    return run, buffer


def stopped_before_training(progress: Progress) -> tuple[str, None, str | None]:
    """(outcome, metrics, error) of an attempt stopped during its gradient check."""
    reason = progress.stop_reason() or "cancelled"
    if reason == "handoff":
        return "queued", None, "handed back before training: worker stopping"
    return reason, None, None


def initial_gradient_check(
    net: Network, data: TrainingData, l2: float, should_stop: Callable[[], bool] | None = None
) -> float:
    """The gradient check of the network before any update, on a few training examples and
    a bounded number of entries; raises GradientCheckStopped when ``should_stop()`` says so."""
    examples = min(GRADIENT_CHECK_EXAMPLES, data.m_train)
    return gradient_check(
        net,
        data.X_train[:, :examples],
        data.Y_train[:, :examples],
        l2=l2,
        max_per_parameter=GRADIENT_CHECK_PER_PARAMETER,
        max_entries=gradient_check_entries(net.num_parameters, examples),
        should_stop=should_stop,
    )


def gradient_check_entries(num_parameters: int, examples: int) -> int:
    """How many entries the initial gradient check perturbs in all, for a network of
    ``num_parameters`` on ``examples`` examples."""
    affordable = GRADIENT_CHECK_WORK // max(2 * examples * num_parameters, 1)
    return max(GRADIENT_CHECK_MIN_ENTRIES, min(GRADIENT_CHECK_MAX_ENTRIES, affordable))


def train_and_record(
    attempt: Attempt,
    data: TrainingData,
    net: Network,
    settings: Settings,
    session_factory: sessionmaker[Session],
    client: MlflowClient,
    run: tracking.RunRef,
    buffer: tracking.MetricsBuffer,
    resume: Checkpoint | None,
    progress: Progress,
) -> tuple[str, dict[str, Any] | None, str | None]:
    """Train; returns (outcome, final metrics, error). The outcome is "lost" if the lease was
    lost, "queued" if the job is to be handed back (its checkpoint is written)."""
    # Params, and the artifacts' first part, go up while the network trains.
    params = in_background(
        "log params",
        tracking.wait_for,
        lambda: log_data_to_run(client, run.run_id, attempt, data),
        settings.mlflow_wait_seconds,
        "log params",
    )
    helper = mlflow_process.for_settings(settings)
    with attempt.phases("mlflow artifacts"):
        uploads = artifacts.RunArtifacts(
            client,
            run.run_id,
            net,
            attempt.spec,
            data.dataset.classes,
            data.m_train,
            upload_folder=helper.log_artifacts,
            upload_file=helper.log_artifact,
            write_first_part=helper.write_first_artifacts,
        )
    try:
        return _train_and_record(
            attempt, data, settings, session_factory, net, params, uploads, buffer, resume, progress
        )
    finally:
        uploads.close()


def _train_and_record(
    attempt: Attempt,
    data: TrainingData,
    settings: Settings,
    session_factory: sessionmaker[Session],
    net: Network,
    params: futures.Future,
    uploads: artifacts.RunArtifacts,
    buffer: tracking.MetricsBuffer,
    resume: Checkpoint | None,
    progress: Progress,
) -> tuple[str, dict[str, Any] | None, str | None]:
    training, phase = attempt.spec.training, attempt.phases
    checkpoints = store_for(settings)
    writer = CheckpointWriter(
        checkpoints, session_factory, attempt.job_id, attempt.owner, lambda: progress.lease_lost
    )
    # Closed once the attempt is over: the last epoch's checkpoint is written to disk and SQL
    # beside the final metrics and artifacts, not before them.
    with closing(writer):
        started = time.perf_counter()
        batch = training.batch_size or data.m_train
        try:
            with phase("training"), blas_threads.for_training(net.layer_dims, batch):
                history = train(
                    net,
                    data.X_train,
                    data.Y_train,
                    optimizer=training.optimizer,
                    learning_rate=training.learning_rate,
                    epochs=training.epochs,
                    batch_size=training.batch_size,
                    l2=training.l2,
                    X_val=data.X_val,
                    Y_val=data.Y_val,
                    seed=training.seed,
                    decay_rate=training.decay_rate,
                    decay_every=training.decay_every,
                    callbacks=[buffer, progress, writer],
                    should_stop=progress.should_stop,
                    checkpoint_every=training.checkpoint_every,
                    resume_from=resume,
                    engine=training.engine,
                )
        except TrainingStopped as stopped:
            reason = progress.stop_reason()
            if reason != "handoff":
                return reason, None, None
            writer.close()  # the checkpoint pending, if any, first: the stop's must be the newest
            # After the one pending (closed): this is the newest. If it could not be saved, the
            # next attempt resumes from the last one that was (or from the start): work is lost,
            # never the job, and the hand-back's event says so.
            epoch = stopped.checkpoint.epoch
            detail = f"handed back at epoch {epoch}: worker stopping"
            # Not twice when the stop came at a checkpoint's epoch (the one close just wrote).
            if writer.saved_epoch != epoch and not writer.save(stopped.checkpoint):
                detail += f"; checkpoint at epoch {epoch} not saved"
            return "queued", None, detail
        except DivergenceError as error:
            return "failed", None, f"{error}; lower training.learning_rate"
        seconds = time.perf_counter() - started
        metrics = final_metrics(net, data, training.l2, training.batch_size)
        buffer.add(training.epochs, mlflow_final_metrics(metrics))
        buffer.flush_soon()  # stored by the server while the artifacts are drawn and written
        with phase("mlflow params"):  # a run without them never gets a model (MLmodel) either
            # wait_for gives up after mlflow_wait_seconds; a call it makes, after its timeout.
            wait = settings.mlflow_wait_seconds + 4 * settings.mlflow_timeout_seconds
            params.result(timeout=wait)
        with phase("mlflow artifacts"):
            title = attempt.spec.name or attempt.spec.experiment
            tracking.wait_for(
                lambda: uploads.finish(net, history, title),
                settings.mlflow_wait_seconds,
                "log artifacts",
            )
        return "succeeded", {**metrics, "training_seconds": round(seconds, 6)}, None


def in_background(what: str, function: Callable[..., Any], *args) -> futures.Future:
    """``function(*args)`` called by a daemon thread (a worker that exits does not wait for
    it); its result or error in the future. An error is logged, whoever asks for it or not."""
    future: futures.Future = futures.Future()

    def call() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(function(*args))
            except BaseException as error:
                future.set_exception(error)

    def log_error(done: futures.Future) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.warning("%s failed", what, exc_info=done.exception())

    future.add_done_callback(log_error)
    threading.Thread(target=call, name=f"gradq {what}", daemon=True).start()
    return future


class CheckpointWriter:
    """The training loop's callback that stores each checkpoint where any worker finds it and
    records it (epoch, checksum) in SQL.

    A thread of its own writes them, so the training loop never waits on the disk's fsync or
    the database. Only the newest checkpoint waits its turn: one that a newer one overtook is
    never written (each supersedes the last), which bounds memory and what ``close()`` waits
    for. Nothing is written once ``lease_lost()`` says the job is another worker's. A
    checkpoint that cannot be written costs only the work since the previous one, so an error
    is logged, not raised."""

    def __init__(
        self,
        checkpoints: CheckpointStore | ArtifactCheckpointStore,
        session_factory,
        job_id: str,
        owner: str,
        lease_lost: Callable[[], bool] = lambda: False,
    ):
        self.checkpoints = checkpoints
        self.session_factory = session_factory
        self.job_id = job_id
        self.owner = owner
        self.lease_lost = lease_lost
        self.saved_epoch: int | None = None  # of the last checkpoint written and recorded
        self._newest: Checkpoint | None = None
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gradq-checkpoints")

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Have ``checkpoint`` (a copy the loop no longer touches) written soon."""
        with self._lock:
            self._newest = checkpoint
        self._thread.submit(self._write_newest)

    def _write_newest(self) -> None:
        with self._lock:
            checkpoint, self._newest = self._newest, None
        if checkpoint is not None:  # None: a later call already wrote it
            self.save(checkpoint)

    def save(self, checkpoint: Checkpoint) -> bool:
        """Write ``checkpoint`` now; True if it is on disk and recorded as the job's newest."""
        if self.lease_lost():
            return False
        try:
            # Older files are pruned only once SQL took this one: a worker that lost the job
            # without knowing it yet must not prune, or leave behind, the new owner's files.
            saved = self.checkpoints.save(self.job_id, checkpoint, prune=False)
            with transaction(self.session_factory) as session:
                recorded = store.jobs.record_checkpoint(
                    session, self.job_id, self.owner, saved.uri, saved.epoch, saved.sha256
                )
                # Not recorded: the job is another worker's, or over. Same name as its newest:
                # the new owner wrote the same bytes, and the file is its.
                theirs = not recorded and saved.uri == session.scalar(
                    select(Job.checkpoint_uri).where(Job.id == self.job_id)
                )
        except Exception:
            log.exception("job %s: checkpoint at epoch %d not saved", self.job_id, checkpoint.epoch)
            return False
        if recorded:
            self.saved_epoch = saved.epoch
        elif not theirs:
            log.warning("job %s is not this worker's: checkpoint removed", self.job_id)
        try:  # what is not removed now goes with the job's other files when it ends
            if recorded:
                self.checkpoints.prune(self.job_id)
            elif not theirs:
                self.checkpoints.remove(saved)
        except Exception:
            log.exception("job %s: older checkpoints not removed", self.job_id)
        return recorded

    def close(self) -> None:
        """Wait until the checkpoint pending, if any, is written (or failed)."""
        self._thread.shutdown(wait=True)


def hand_back(
    client: MlflowClient,
    run: tracking.RunRef | None,
    buffer: tracking.MetricsBuffer | None,
    attempt: Attempt,
    settings: Settings,
    session_factory: sessionmaker[Session],
    detail: str,
) -> str | None:
    """Queue the job again after its checkpoint was written: metrics sent (those that cannot
    be are in the checkpoint's history), the run SCHEDULED rather than RUNNING. Returns the
    job's status: "queued", or "cancelled" if a cancel came first (the reconciler then ends
    the run KILLED)."""
    try:
        if buffer is not None:
            buffer.close()
        if run is not None:
            tracking.mark_scheduled(client, run.run_id)
    except Exception as error:
        log.warning("job %s: MLflow not updated before hand-back: %s", attempt.job_id, error)
    undelivered = buffer.undelivered if buffer is not None else 0

    def release(session: Session) -> str | None:
        return store.jobs.release(session, attempt.job_id, attempt.owner, detail, undelivered)

    status = in_transaction_retrying(session_factory, release, settings.lease_seconds)
    log.info("job %s %s: %s", attempt.job_id, detail, status or "lease lost meanwhile")
    return status


def build_network(spec: JobSpec, data: TrainingData) -> Network:
    """The spec's network for the data: sigmoid output for two classes unless told otherwise."""
    k = data.dataset.num_classes
    output = spec.model.output or ("sigmoid" if k == 2 else "softmax")
    if output == "sigmoid" and k != 2:
        raise ValueError(f"model.output 'sigmoid' needs 2 classes; the dataset has {k}")
    return Network(
        layer_dims=[data.dataset.n_x, *spec.model.hidden_layers, 1 if output == "sigmoid" else k],
        hidden_activation=spec.model.hidden_activation,
        output=output,
        init=spec.model.init,
        seed=spec.training.seed,
        dtype=spec.training.dtype,
    )


def final_metrics(
    net: Network, data: TrainingData, l2: float, batch_size: int | None = None
) -> dict[str, float | None]:
    """The trained network's cost and accuracies (after the last update), each set scored in
    batches of at most the training batch (models/network.py scoring_batch)."""
    metrics: dict[str, float | None] = {
        "cost": net.cost(data.X_train, data.Y_train, l2=l2, batch_size=batch_size),
        "train_accuracy": accuracy(net, data.X_train, data.Y_train, batch_size),
        "val_accuracy": None,
    }
    if data.X_val is not None:
        metrics["val_accuracy"] = accuracy(net, data.X_val, data.Y_val, batch_size)
    if data.dataset.X_test is not None:
        X_test, Y_test = data.dataset.X_test, data.dataset.Y_test
        metrics["test_accuracy"] = accuracy(net, X_test, Y_test, batch_size)
    return metrics


def mlflow_final_metrics(metrics: dict[str, float | None]) -> dict[str, float]:
    """The final metrics' MLflow names: ``final.cost`` and so on (``cost`` is per epoch, taken
    before each update), but ``test_accuracy`` as is (only ever measured at the end)."""
    named = {k if k == "test_accuracy" else f"final.{k}": v for k, v in metrics.items()}
    return {k: v for k, v in named.items() if v is not None}


def accuracy(net: Network, X: np.ndarray, Y: np.ndarray, batch_size: int | None = None) -> float:
    """The fraction of the columns of X: (n_x, m) classified as Y: (1, m) says."""
    return float(np.mean(net.predict(X, batch_size) == Y)) if X.shape[1] else math.nan


def close_tracking(
    client: MlflowClient,
    run: tracking.RunRef | None,
    buffer: tracking.MetricsBuffer | None,
    outcome: str,
    error: str | None,
) -> tuple[bool, int]:
    """Send the last metrics and end the run with the outcome's status (tagged
    gradq.metrics_incomplete if values never reached MLflow). Returns (done, the values not
    delivered). A failure here is logged, not raised: the job's outcome in SQL must still be
    written, and the reconciler ends the run when MLflow answers again."""
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
            client.set_tag(run.run_id, tracking.METRICS_INCOMPLETE_TAG, incomplete)
        if error:
            client.set_tag(run.run_id, "gradq.error", error[:5000])
        tracking.end_run(client, run.run_id, outcome)
    except Exception:
        log.exception("could not close MLflow run %s; the reconciler will", run.run_id)
        return False, undelivered
    return True, undelivered
