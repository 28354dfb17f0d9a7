"""What a worker process does as it starts and stops, in order, in one place (Celery's
signals): each step is a plain function of the module whose idea it is."""

from celery.signals import (
    after_setup_task_logger,
    celeryd_init,
    worker_init,
    worker_process_init,
    worker_shutting_down,
)

import logs
from settings import get_settings
from workers import blas_threads, heap, mlflow_process, orphaned_folders, shutdown


@celeryd_init.connect
def configured(options: dict, instance, **_) -> None:
    """The main process, before it sets up logging and the pool."""
    blas_threads.remember_concurrency(options)
    if get_settings().log_format == "json":
        # From the first line: the start-up banner, printed rather than logged, is left out
        # (as `celery --quiet` does), and what Celery warns before its loggers exist is JSON.
        instance.quiet = True
        logs.configure("json")


@after_setup_task_logger.connect
def loggers_set_up(**_) -> None:
    """Celery has set up its loggers (the root one hijacked, then the task loggers'): their
    handlers, inherited by the pool's children, write GRADQ_LOG_FORMAT."""
    logs.configure(get_settings().log_format)


@worker_init.connect
def main_process_started(**_) -> None:
    heap.freeze_startup_objects()  # before the pool's children are forked: they start frozen


@worker_process_init.connect
def pool_child_started(**_) -> None:
    shutdown.forget_requests()  # a fresh child of a pool that a forked parent may have flagged
    blas_threads.limit_for_pool_child()
    orphaned_folders.log_orphaned_folders_removed()  # what children that died left in /tmp
    mlflow_process.start_for_pool_child()  # its imports done before the first job
    heap.freeze_startup_objects()  # last: what the child made since the fork, steps included


@worker_shutting_down.connect
def shutting_down(sender: str, **_) -> None:
    shutdown.hand_back_running_jobs(sender)
