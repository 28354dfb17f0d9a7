"""Readiness checks of what the API needs: SQL, the broker, MLflow. Each answers quickly.

/readyz needs no token: what a check says names no credential, query string or server path
(service/redaction.py)."""

import os
from dataclasses import dataclass

import httpx
from kombu import Connection
from sqlalchemy import Engine, text

from service.redaction import public_url, redact
from settings import Settings

TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def check_sql(engine: Engine, settings: Settings) -> Check:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # any failure means not ready; the detail says which
        return Check(False, _failure(error, settings))
    return Check(True, engine.dialect.name)


def check_broker(settings: Settings) -> Check:
    folder = settings.broker_transport_options().get("data_folder_out")
    if folder:  # the filesystem broker: its folder must take new messages
        if os.path.isdir(folder) and os.access(folder, os.W_OK):
            return Check(True, "filesystem")
        return Check(False, "the filesystem broker's folder is missing or not writable")
    try:
        with Connection(settings.celery_broker_url, connect_timeout=TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=TIMEOUT_SECONDS
            )
    except Exception as error:
        return Check(False, _failure(error, settings))
    return Check(True, public_url(settings.celery_broker_url))


def check_mlflow(settings: Settings) -> Check:
    uri = settings.mlflow_tracking_uri
    if not uri.startswith(("http://", "https://")):
        return Check(True, f"local tracking store {public_url(uri)}")
    try:
        response = httpx.get(f"{uri.rstrip('/')}/health", timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        return Check(False, _failure(error, settings))
    answered = f"{public_url(uri).rstrip('/')}/health answered {response.status_code}"
    return Check(response.status_code == 200, answered)


def _failure(error: Exception, settings: Settings) -> str:
    return redact(f"{type(error).__name__}: {error}".splitlines()[0], settings)


def readiness(engine: Engine, settings: Settings) -> dict[str, Check]:
    return {
        "sql": check_sql(engine, settings),
        "broker": check_broker(settings),
        "mlflow": check_mlflow(settings),
    }
