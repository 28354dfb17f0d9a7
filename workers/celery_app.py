"""The Celery app of the workers: `celery -A workers.celery_app worker`, and the reconciler,
`celery -A workers.celery_app worker --beat -Q gradq.reconcile` (service/stack.py).

The broker only delivers job ids; SQL holds every job's state (DESIGN.md section 1), so nothing
here keeps results or relies on a message surviving: what a broker loses, the reconciler sends
again.
"""

import importlib.util
import math
import os
import sys

from celery import Celery

from settings import Settings, get_settings, turn_off_mlflow_telemetry

RECONCILE_TASK = "gradq.reconcile"
RECONCILE_QUEUE = "gradq.reconcile"  # its own queue: never behind a long training job

# MLflow prints a "View run" line to stdout at every run's end; the worker logs its own line.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
turn_off_mlflow_telemetry()  # a worker started by hand (compose, the docs) too


def configure_mlflow_client(settings: Settings) -> None:
    """Bound every MLflow HTTP call: by default the client retries for minutes with
    backoff, blocking whatever waits on it. gradq retries on its own terms instead
    (mlflow_retry.wait_for), and metrics never wait: they are spooled."""
    timeout = str(math.ceil(settings.mlflow_timeout_seconds))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", timeout)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


# Modules MLflow's client tries to import on every REST call, to tell whether it runs inside
# Databricks (mlflow/utils/databricks_utils.py). Not pyspark, which it probes too: mlflow.data
# takes `"pyspark" in sys.modules` to mean that Spark is there.
DATABRICKS_PROBES = ("dbruntime", "IPython")


def skip_absent_databricks_probes(names: tuple[str, ...] = DATABRICKS_PROBES) -> list[str]:
    """Make the imports of ``names`` that are not installed fail at once; returns those names.

    A failed import is not remembered: each one searches every folder of sys.path again, ~0.5
    ms per MLflow call here (a quarter of the CPU of uploading a small artifact). A None in
    sys.modules is Python's own "not importable" mark. Installed modules are left alone."""
    absent = [
        name for name in names if name not in sys.modules and importlib.util.find_spec(name) is None
    ]
    for name in absent:
        sys.modules[name] = None
    return absent


def make_app(settings: Settings) -> Celery:
    app = Celery("gradq", include=["workers.tasks"])
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_transport=settings.celery_broker_transport,
        # On Redis its visibility_timeout: longer than the longest job (settings.py).
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
        # A worker started before its broker (compose, make up) waits for it instead of exiting,
        # and one that loses it (a Redis restart) keeps reconnecting, for ever.
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        task_routes={RECONCILE_TASK: {"queue": RECONCILE_QUEUE}},
        beat_schedule={
            "reconcile": {
                "task": RECONCILE_TASK,
                "schedule": settings.reconcile_seconds,
                # A pass that waited longer than a period is stale: the next one is coming.
                "options": {"expires": settings.reconcile_seconds},
            }
        },
        beat_schedule_filename=str((settings.home / "celerybeat-schedule").resolve()),
    )
    return app


configure_mlflow_client(get_settings())
skip_absent_databricks_probes()
app = make_app(get_settings())

# What a worker process does at start, connected before it sends its first signal.
from workers import process_start  # noqa: E402, F401
