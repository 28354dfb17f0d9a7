"""``mlflow server --app-name gradq``: MLflow's own server app, its SQL tracking store the one of
mlflow_server/store.py.

MLflow finds this module through the ``mlflow.app`` entry point (pyproject.toml) and serves its
``app`` with uvicorn. The tracking store is built at the first request, after this import
registered its builder, so only the server process changes: a client given a database URI,
the model registry and every other store stay MLflow's. It also serves one route of gradq's,
the workers' batch upload of artifacts (mlflow_server/batch_upload.py).
"""

import os

from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
from mlflow.server import handlers
from mlflow.server.constants import READ_REPLICA_BACKEND_STORE_URI_ENV_VAR
from mlflow.server.fastapi_app import app
from starlette.routing import Mount

from mlflow_server import batch_upload
from mlflow_server.store import UPSERT, BatchMetricsStore

__all__ = ["app"]


def batch_metrics_store(store_uri: str, artifact_uri: str | None):
    if MLFLOW_ENABLE_WORKSPACES.get():  # MLflow's workspace-aware store: left as it is
        return handlers.TrackingStoreRegistryWrapper._get_sqlalchemy_store(store_uri, artifact_uri)
    read_replica = os.environ.get(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR)
    return BatchMetricsStore(store_uri, artifact_uri, read_db_uri=read_replica)


for scheme in UPSERT:
    handlers._tracking_store_registry.register(scheme, batch_metrics_store)

# Ahead of the Flask app mounted at "/", which would take every path (as MLflow's own
# FastAPI routes are: mlflow.server.fastapi_app).
app.include_router(batch_upload.router)
app.router.routes.sort(key=lambda route: isinstance(route, Mount) and route.path == "")
