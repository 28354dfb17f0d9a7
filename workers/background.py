"""A call made by a thread of its own while the attempt goes on."""

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

log = logging.getLogger(__name__)


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
