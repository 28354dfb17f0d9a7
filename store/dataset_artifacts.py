"""Uploaded datasets' copies in the MLflow tracking server's served artifact store (proxied
artifacts, `mlflow-artifacts:` URIs), the one store every host reaches over HTTP: with
GRADQ_DATASET_STORE=mlflow the API puts a dataset's checked files there, and a worker that does
not have them in its own data root fetches them (workers/dataset_cache.py).

A copy lives at gradq/datasets/<name>/<sha256>: named by its content, so a copy that an
upload left behind when its row could not be written is never mistaken for another's.

MLflow is imported inside the functions: importing it costs the API seconds and ~100 MB
(contract/mlflow_names.py), and only these calls need it.
"""

import math
import os
from pathlib import Path

ARTIFACT_ROOT = "gradq/datasets"


class DatasetStoreError(Exception):
    """MLflow's artifact store did not take or give a dataset's files. ``status``: the HTTP
    status MLflow answered, or None when it could not be reached."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class DatasetStoreUnreachableError(DatasetStoreError, ConnectionError):
    """MLflow could not be reached, or answered a 5xx: worth trying again later (a
    ConnectionError, as workers/mlflow_retry.py's wait_for tells)."""


def artifact_uri(name: str, sha256: str) -> str:
    # No host: MLflow resolves the URI against the tracking URI, any path prefix included.
    return f"mlflow-artifacts:/{ARTIFACT_ROOT}/{name}/{sha256}"


def upload(folder: Path, name: str, sha256: str, settings) -> None:
    """Store every file below ``folder`` as the copy of dataset ``name``."""
    repository = _repository(name, sha256, settings)
    try:
        repository.log_artifacts(str(folder))
    except Exception as error:
        raise _store_error("did not take", name, error) from error


def download(name: str, sha256: str, destination: Path, settings) -> int:
    """Fetch the copy of dataset ``name`` into the existing folder ``destination``; returns
    the number of files fetched (0: the store has no such copy)."""
    repository = _repository(name, sha256, settings)
    try:
        repository.download_artifacts("", dst_path=str(destination))
    except Exception as error:
        raise _store_error("did not give", name, error) from error
    return sum(1 for path in destination.rglob("*") if path.is_file())


def _repository(name: str, sha256: str, settings):
    _bound_http_calls(settings)
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(
        artifact_uri(name, sha256), tracking_uri=settings.mlflow_tracking_uri
    )


def _bound_http_calls(settings) -> None:
    """As the workers do (workers/celery_app.py): MLflow's client retries for minutes by
    default, and an upload request would wait all that time on an MLflow that is down."""
    os.environ.setdefault(
        "MLFLOW_HTTP_REQUEST_TIMEOUT", str(math.ceil(settings.mlflow_timeout_seconds))
    )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def _store_error(what: str, name: str, error: Exception) -> DatasetStoreError:
    """The error with MLflow's answer when it gave one; never the tracking URI, which may
    hold credentials."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    reason = (
        f"it answered HTTP {status}"
        if status
        else f"it could not be reached ({type(error).__name__})"
    )
    kind = DatasetStoreUnreachableError if status is None or status >= 500 else DatasetStoreError
    return kind(f"MLflow's artifact store {what} dataset {name!r}: {reason}", status)
