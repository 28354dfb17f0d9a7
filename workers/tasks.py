"""The Celery tasks: thin, they find their resources and call plain functions."""

import logging
import os
from functools import lru_cache, partial

from celery.signals import task_postrun, task_prerun
from mlflow.tracking import MlflowClient
from sqlalchemy.orm import Session, sessionmaker

import logs
from contract.task_names import TRAIN_TASK
from settings import get_settings
from store.db import make_engine, make_session_factory, transaction
from store.jobs import mark_undispatched
from workers import reconciler, shutdown
from workers.celery_app import RECONCILE_TASK, app
from workers.run import run_job

log = logging.getLogger(__name__)


@lru_cache
def session_factory(url: str) -> sessionmaker[Session]:
    """One engine per worker process, made on first use: in the forked child, never shared
    with the parent's connections."""
    return make_session_factory(make_engine(url))


@app.task(name=TRAIN_TASK, bind=True)
def train_job(self, job_id: str) -> None:
    """Train job ``job_id`` (a row of the jobs table) and record its outcome."""
    shutdown.catch_sigterm_in_pool_child()
    settings = get_settings()
    owner = f"{self.request.hostname or 'worker'}/{os.getpid()}"
    factory = session_factory(settings.sql_url)
    send = partial(send_train, factory=factory)  # a sweep's trials its halving promotes
    if run_job(job_id, settings, factory, owner, send) == "queued":
        # Handed back on a SIGTERM to this child alone (a revoke with terminate): the next
        # job it is given runs; a worker shutting down gives it none.
        shutdown.requested.clear()


@task_prerun.connect(sender=train_job)
def _log_for_the_job(args=(), **_) -> None:
    """From here to Celery's line saying how the task ended, every line names the job."""
    logs.start_job_logging(args[0])


@task_postrun.connect(sender=train_job)
def _log_for_no_job(**_) -> None:
    logs.end_job_logging()


def send_train(job_id: str, factory: sessionmaker[Session]) -> None:
    """Publish gradq.train(job_id); if the broker does not take it, the outbox keeps it."""
    try:
        app.send_task(TRAIN_TASK, args=[job_id])
    except Exception as error:
        log.warning("job %s not sent, the reconciler will send it: %s", job_id, error)
        with transaction(factory) as session:
            mark_undispatched(session, job_id)


@app.task(name=RECONCILE_TASK, ignore_result=True)
def reconcile() -> None:
    """One pass of the reconciler (scheduled by Celery beat)."""
    settings = get_settings()
    factory = session_factory(settings.sql_url)
    reconciler.reconcile(
        factory,
        settings,
        send=lambda job_id: send_train(job_id, factory),
        mlflow=MlflowClient(settings.mlflow_tracking_uri),
        backlog=training_backlog,
    )


def training_backlog() -> int | None:
    """Messages waiting in the training queue, or None if the broker cannot tell. On Redis
    an empty queue answers None too (kombu looks for the list, which Redis drops when it
    empties): both mean "any stale queued job may have lost its message"."""
    try:
        with app.connection_for_write() as connection:
            declared = connection.default_channel.queue_declare(
                queue=app.conf.task_default_queue, passive=True
            )
            return declared.message_count
    except Exception as error:
        log.info("training queue length unknown: %s", error)
        return None
