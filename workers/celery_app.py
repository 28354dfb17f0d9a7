"""The Celery app of the workers: `celery -A workers.celery_app worker`.

The broker only delivers job ids; SQL holds every job's state (DESIGN.md section 1), so nothing
here keeps results or relies on a message surviving.
"""

import os

from celery import Celery

from settings import Settings, get_settings

# MLflow prints a "View run" line to stdout at every run's end; the worker logs its own line.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def make_app(settings: Settings) -> Celery:
    app = Celery("gradq", include=["workers.tasks"])
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_transport_options=settings.broker_transport_options(),
        # Messages carry a job id and nothing else: JSON, never pickle from the wire.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # The job row in SQL is the result; a result backend would be a second, stale copy.
        task_ignore_result=True,
        # Acknowledge after the task returns, so a worker killed mid-job leaves the message to
        # be delivered again (the claim makes the second delivery safe).
        task_acks_late=True,
        # A child process lost mid-task (OOM, SIGKILL) requeues its message instead of
        # acknowledging it as failed.
        task_reject_on_worker_lost=True,
        # Jobs are long: a worker reserves only the one it runs, leaving the rest to its peers.
        worker_prefetch_multiplier=1,
        # A worker started before its broker (compose, make up) waits for it instead of exiting.
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app(get_settings())
