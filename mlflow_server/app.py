"""``mlflow server --app-name gradq``: MLflow's own server app, its SQL tracking store the one of
mlflow_server/store.py.

MLflow finds this module through the ``mlflow.app`` entry point (pyproject.toml) and serves its
``app`` with uvicorn. The tracking store is built at the first request, after this import
registered its builder, so only the server process changes: a client given a database URI,
the model registry and every other store stay MLflow's.
"""

import os

from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
from mlflow.server import handlers
from mlflow.server.constants import READ_REPLICA_BACKEND_STORE_URI_ENV_VAR
from mlflow.server.fastapi_app import app

from mlflow_server.store import UPSERT, BatchMetricsStore

__all__ = ["app"]


def batch_metrics_store(store_uri: str, artifact_uri: str | None):
    if MLFLOW_ENABLE_WORKSPACES.get():  # MLflow's workspace-aware store: left as it is
        return handlers.TrackingStoreRegistryWrapper._get_sqlalchemy_store(store_uri, artifact_uri)
    read_replica = os.environ.get(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR)
    return BatchMetricsStore(store_uri, artifact_uri, read_db_uri=read_replica)


for scheme in UPSERT:
    handlers._tracking_store_registry.register(scheme, batch_metrics_store)
