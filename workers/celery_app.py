"""The Celery app of the workers: `celery -A workers.celery_app worker`.

The broker only delivers job ids; SQL holds every job's state (DESIGN.md section 1), so nothing
here keeps results or relies on a message surviving.
"""

import os

from celery import Celery

from settings import Settings, get_settings

# MLflow prints a "View run" line to stdout at every run's end; the worker logs its own line.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

# Longer than the longest job a worker may run: Redis re-delivers an unacknowledged message after
# this, and with late acks a running job's message stays unacknowledged until the job ends.
REDIS_VISIBILITY_TIMEOUT_SECONDS = 24 * 3600


def broker_transport_options(settings: Settings) -> dict:
    """The transport options of ``settings.celery_broker_url``: for the filesystem broker the
    same folders as the API's (service/dispatch.py), which sends into them."""
    if settings.celery_broker_url.startswith("filesystem://"):
        queue, processed, control = (
            settings.broker_folder / name for name in ("queue", "processed", "control")
        )
        for folder in (queue, processed, control):
            folder.mkdir(parents=True, exist_ok=True)
        # One folder in and out: the producer writes where the consumer reads.
        return {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(processed),
            # kombu's default is "control" in the working directory (remote control, fanout).
            "control_folder": str(control),
            "polling_interval": settings.broker_polling_seconds,
        }
    if settings.celery_broker_url.startswith(("redis://", "rediss://")):
        return {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT_SECONDS}
    return {}


def make_app(settings: Settings) -> Celery:
    app = Celery("gradq", include=["workers.tasks"])
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_transport_options=broker_transport_options(settings),
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
