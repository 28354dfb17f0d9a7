"""Log lines as text (the default) or as one JSON object a line (GRADQ_LOG_FORMAT=json), for the
API, the worker and the reconciler alike; every line a worker logs while it runs a job names the
job and the attempt."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("text", "json")
JSON_FIELDS = "{asctime}{levelname}{name}{process}{threadName}{message}"


@dataclass
class JobContext:
    job_id: str
    attempt: int | None = None  # known once the job is claimed


# The job this process runs, if any. Process-wide rather than a ContextVar: a pool child runs one
# job at a time, and the threads an attempt starts (heartbeat, metrics, uploads) log for it too.
_current: JobContext | None = None


@contextmanager
def job_logging(job_id: str) -> Iterator[JobContext]:
    """Every line logged inside the block carries ``job_id`` (and the attempt, once set)."""
    global _current
    previous, _current = _current, JobContext(job_id)
    try:
        yield _current
    finally:
        _current = previous


def start_job_logging(job_id: str) -> None:
    """job_logging's start, for a caller that ends it elsewhere (Celery's task signals)."""
    set_current(JobContext(job_id))


def end_job_logging() -> None:
    set_current(None)


def current() -> JobContext | None:
    """The job being logged, if any (a copy, to send to another process)."""
    return None if _current is None else JobContext(_current.job_id, _current.attempt)


def set_current(job: JobContext | None) -> None:
    """Log for ``job`` (None: for none), as another process told (workers/mlflow_process.py)."""
    global _current
    _current = job


def set_attempt(number: int) -> None:
    """The attempt of the job being logged, once its claim says which."""
    if _current is not None:
        _current.attempt = number


class JobContextFilter(logging.Filter):
    """Adds job_id and attempt to the records of a handler while a job runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _current
        if current is not None:
            record.job_id, record.attempt = current.job_id, current.attempt
        return True


def json_formatter() -> JsonFormatter:
    return JsonFormatter(
        JSON_FIELDS,
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


def write_json(handler: logging.Handler) -> None:
    """``handler`` writes one JSON object a line, with the job's fields while a job runs."""
    handler.setFormatter(json_formatter())
    if not any(isinstance(f, JobContextFilter) for f in handler.filters):
        handler.addFilter(JobContextFilter())


def configure(log_format: str) -> None:
    """Make the process's logging write ``log_format``, after whatever configured it (uvicorn,
    Celery): with "json", every handler of every logger writes JSON, the root logger gets one
    on stderr if it had none, and warnings are logged. "text" leaves everything as it is."""
    if log_format != "json":
        return
    logging.captureWarnings(True)  # warnings.warn's lines too, through the py.warnings logger
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    loggers = [root, *logging.root.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):  # placeholders have none
            write_json(handler)
