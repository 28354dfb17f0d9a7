"""How many training messages wait in the broker: the length of Celery's queue in Redis, or
the message files of the embedded filesystem broker. None when the broker cannot be reached."""

import logging
import os

import redis

from contract.task_names import TRAIN_QUEUE
from settings import Settings

log = logging.getLogger("gradq.service")

TIMEOUT_SECONDS = 1.0


def broker_depth(settings: Settings) -> int | None:
    """Messages waiting in the training queue; None if the broker did not answer (or is of a
    kind whose depth this does not read)."""
    url = settings.celery_broker_url
    try:
        if url.startswith("filesystem://"):
            return _filesystem_depth(settings.broker_transport_options()["data_folder_out"])
        if url.startswith(("redis://", "rediss://")):
            return _redis_depth(url)
    except (OSError, redis.RedisError) as error:
        log.info("broker queue depth unknown: %s", type(error).__name__)
        return None
    return None


def _filesystem_depth(folder: str) -> int:
    # Named as broker/filesystem.py writes them; a message being written is hidden.
    suffix = f".{TRAIN_QUEUE}.msg"
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.name.endswith(suffix) and not e.name.startswith("."))


def _redis_depth(url: str) -> int:
    client = redis.Redis.from_url(
        url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
    )
    try:
        return int(client.llen(TRAIN_QUEUE))
    finally:
        client.close()
