"""A run's metric history from MLflow, with a short timeout: the API answers 503 rather than
hang when the tracking server is away. MLflow's own client retries for minutes by default."""

import math

import httpx

METRIC_KEYS = ("cost", "train_accuracy", "val_accuracy")
TIMEOUT_SECONDS = 5.0
MAX_PAGES = 100


class MlflowUnavailableError(Exception):
    """The tracking server did not answer, or answered with a server error."""


def metric_histories(tracking_uri: str, run_id: str) -> dict[str, list[dict]]:
    """{"cost": [{"step": 0, "value": ...}, ...], "train_accuracy": [...], ...}, by step."""
    if tracking_uri.startswith(("http://", "https://")):
        with httpx.Client(base_url=tracking_uri.rstrip("/"), timeout=TIMEOUT_SECONDS) as client:
            histories = {key: _rest_history(client, run_id, key) for key in METRIC_KEYS}
    else:
        histories = _store_histories(tracking_uri, run_id)
    return {key: sorted(points, key=lambda p: p["step"]) for key, points in histories.items()}


def _rest_history(client: httpx.Client, run_id: str, key: str) -> list[dict]:
    points, page_token = [], None
    for _ in range(MAX_PAGES):
        params = {"run_id": run_id, "metric_key": key}
        if page_token:
            params["page_token"] = page_token
        try:
            response = client.get("/api/2.0/mlflow/metrics/get-history", params=params)
        except httpx.HTTPError as error:
            raise MlflowUnavailableError(f"{type(error).__name__}: {error}") from error
        if response.status_code == 404:  # the run is gone or not yet created
            return points
        if response.status_code >= 400:
            raise MlflowUnavailableError(f"HTTP {response.status_code}: {response.text[:200]}")
        body = response.json()
        points += [_point(metric["step"], metric["value"]) for metric in body.get("metrics", [])]
        page_token = body.get("next_page_token")
        if not page_token:
            break
    return points


def _store_histories(tracking_uri: str, run_id: str) -> dict[str, list[dict]]:
    """A local tracking store (sqlite:///..., a folder): read through MLflow's client."""
    # Imported here: MLflow takes seconds to import and most deployments never need it.
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        return {
            key: [_point(m.step, m.value) for m in client.get_metric_history(run_id, key)]
            for key in METRIC_KEYS
        }
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {key: [] for key in METRIC_KEYS}
        raise MlflowUnavailableError(str(error)) from error


def _point(step, value) -> dict:
    value = float(value)  # the REST API spells NaN as the string "NaN"
    return {"step": int(step), "value": value if math.isfinite(value) else None}
