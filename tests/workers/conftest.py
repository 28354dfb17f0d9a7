"""Fixtures of the worker tests: one real MLflow server for the package, jobs in real databases.

The MLflow server takes ~10 s to start here, so the worker tests share one (package scope);
each test uses experiments of its own, so none sees another's runs.
"""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from settings import Settings
from tests.processes import start_mlflow_server
from tests.workers.helpers import quick_settings


@pytest.fixture(scope="package")
def mlflow_server(tmp_path_factory):
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server.url)  # for mlflow.pyfunc.load_model("runs:/...")
    yield server
    mlflow.set_tracking_uri(previous)
    server.stop()


@pytest.fixture
def mlflow_client(mlflow_server) -> MlflowClient:
    return MlflowClient(mlflow_server.url)


@pytest.fixture
def settings(tmp_path, database_url, mlflow_server) -> Settings:
    """Settings of the embedded stack in tmp_path, on the test's database and MLflow server."""
    return quick_settings(tmp_path / "gradq", database_url, mlflow_server.url)
