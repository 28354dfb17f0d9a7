"""Waiting for an MLflow that cannot be reached: which errors are worth trying again, and for
how long."""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import requests
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)
T = TypeVar("T")


def wait_for(call: Callable[[], T], seconds: float, what: str) -> T:
    """``call()``, tried again with growing pauses while MLflow cannot be reached, for at most
    ``seconds``; then its last error is raised. An answer from MLflow that is an error (a
    4xx) is raised at once: trying again would not change it."""
    deadline = time.monotonic() + seconds
    pause = 0.2
    while True:
        try:
            return call()
        except Exception as error:
            if not unreachable(error) or time.monotonic() + pause > deadline:
                raise
            log.warning("%s: MLflow unreachable, trying again in %.1f s: %s", what, pause, error)
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def unreachable(error: Exception) -> bool:
    """A connection refused or reset, a timeout, or a 5xx: MLflow is down or overloaded."""
    if isinstance(error, MlflowException):
        status = getattr(error, "get_http_status_code", lambda: 500)()
        return status >= 500
    return isinstance(error, OSError | requests.RequestException)
