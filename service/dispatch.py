"""Sending jobs to the workers by task name, through a Celery client that knows no tasks.

service/ never imports workers/ (DESIGN.md section 2), so the broker options live here and the
worker side mirrors them: both must read and write the same folders of the filesystem broker.
"""

import logging

from celery import Celery

from contract.task_names import TRAIN_TASK
from settings import Settings

log = logging.getLogger("gradq.service")

# A down broker must not hold the request for long: the job is already committed and the
# reconciler sends it later.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


def make_celery_client(settings: Settings) -> Celery:
    client = Celery("gradq-service", broker=settings.celery_broker_url, set_as_current=False)
    client.conf.update(
        broker_transport=settings.celery_broker_transport,
        broker_transport_options=settings.broker_transport_options(),
        broker_connection_timeout=2,
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
    )
    return client


def send_train(client: Celery, job_id: str) -> bool:
    """Publish gradq.train(job_id); False (and a warning) if the broker did not take it."""
    try:
        client.send_task(TRAIN_TASK, args=[job_id])
    # Whatever the broker fails with, the job row stays queued and undispatched: the
    # reconciler re-sends it, so the request itself still succeeds.
    except Exception as error:
        log.warning("job %s not dispatched, the reconciler will send it: %s", job_id, error)
        return False
    return True
