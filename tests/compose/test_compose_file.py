"""docker-compose.yml without a Docker engine: every variable, volume, port and image it names
is defined, its services run the embedded stack's commands, and each command, run here against
the local PostgreSQL and Redis, comes up and trains a job."""

import re
import sys
import tomllib

import pytest

from service.stack import api_command, reconciler_command, tracking_server_command, worker_command
from tests.compose.compose_file import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    MissingVariableError,
    load,
    read_env_file,
    referenced_variables,
)
from tests.compose.engine import STANDIN_IMAGES
from tests.processes import REPO

EXAMPLE = read_env_file(ENV_EXAMPLE)
GRADQ_SERVICES = ("mlflow", "migrate", "api", "worker", "reconciler", "flower")


@pytest.fixture(scope="module")
def services() -> dict:
    return load(EXAMPLE)["services"]


def as_in_image(command: list[str]) -> list[str]:
    """A command of service/stack.py as the image runs it: `python` for this interpreter."""
    assert command[0] == sys.executable
    return ["python", *command[1:]]


def test_every_variable_the_compose_file_reads_is_in_env_example():
    missing = referenced_variables(COMPOSE_FILE.read_text()) - EXAMPLE.keys()
    assert not missing, f"not in .env.example: {sorted(missing)}"


@pytest.mark.parametrize("secret", ["POSTGRES_PASSWORD", "GRADQ_API_TOKENS"])
def test_a_missing_secret_stops_compose_with_a_message_naming_it(secret):
    without = {name: value for name, value in EXAMPLE.items() if name != secret}
    with pytest.raises(MissingVariableError, match=f"^{secret}: set {secret}"):
        load(without)
    with pytest.raises(MissingVariableError, match=secret):
        load({**without, secret: ""})


def test_every_volume_is_declared_and_used_and_every_bind_mount_exists(services):
    declared = set(load(EXAMPLE)["volumes"])
    used = set()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is not here"
            else:
                assert source in declared, f"{name} mounts undeclared volume {source}"
                used.add(source)
    assert used == declared


def test_images_are_the_official_names_or_gradqs_own_built_by_each_service(services):
    for name, service in services.items():
        if name in GRADQ_SERVICES:
            # compose 1.29 pulls an image that only another service builds: each builds it.
            assert (service["image"], service["build"]) == ("gradq:latest", "."), name
        else:
            assert service["image"] in STANDIN_IMAGES, name
            assert "build" not in service
    bases = re.findall(r"^FROM (\S+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert set(bases) == {"python:3.11-slim-bookworm"} <= STANDIN_IMAGES.keys()


def test_workers_scale_share_no_disk_and_keep_uploads_and_checkpoints_in_mlflow(services):
    for name, service in services.items():
        assert "container_name" not in service, f"{name} cannot scale with a container_name"
    # No disk of the API's or another worker's: a worker fetches uploaded datasets from, and
    # writes checkpoints to, MLflow's served artifacts.
    assert "volumes" not in services["worker"]
    assert "gradq-datasets:/var/lib/gradq/datasets" in services["api"]["volumes"]
    for name in ("api", "worker", "reconciler"):
        environment = services[name]["environment"]
        assert environment["GRADQ_DATASET_STORE"] == "mlflow", name
        assert environment["GRADQ_CHECKPOINT_STORE"] == "mlflow", name
    assert "--serve-artifacts" in services["mlflow"]["command"]
    assert "ports" not in services["worker"]


def test_every_named_volume_of_a_gradq_service_is_a_folder_the_image_gives_to_gradq(services):
    dockerfile = (REPO / "Dockerfile").read_text()
    for name in GRADQ_SERVICES:
        for volume in services[name].get("volumes", []):
            mount = volume.split(":")[1]
            assert mount in dockerfile, f"{name}: {mount} is not made in the image"
    assert "chown -R gradq:gradq /var/lib/gradq /var/lib/mlflow" in dockerfile


def test_published_ports_are_the_ports_the_commands_listen_on(services):
    for name, service in services.items():
        for mapping in service.get("ports", []):
            inside = mapping.rsplit(":", 1)[1]
            command = " ".join(service["command"])
            assert f"--port {inside}" in command or f"--port={inside}" in command, name


def test_gradq_services_depend_on_healthy_servers_and_a_finished_migration(services):
    for name in ("api", "worker", "reconciler"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
    assert services["mlflow"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name in ("postgres", "redis", "mlflow", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name


def test_every_gradq_service_runs_the_command_of_the_embedded_stack(services):
    password = EXAMPLE["POSTGRES_PASSWORD"]
    assert services["api"]["command"] == as_in_image(api_command("0.0.0.0", 8000))
    assert services["worker"]["command"] == as_in_image(worker_command())
    assert services["reconciler"]["command"] == as_in_image(reconciler_command())
    mlflow_store = f"postgresql+psycopg2://gradq:{password}@postgres:5432/mlflow"
    assert services["mlflow"]["command"] == as_in_image(
        tracking_server_command(mlflow_store, "/var/lib/mlflow/artifacts", "0.0.0.0", 5000)
    )
    assert services["migrate"]["command"] == ["gradq", "migrate"]


def test_mlflow_has_its_own_database_and_accepts_its_service_name_as_host(services):
    gradq_db = services["api"]["environment"]["GRADQ_DATABASE_URL"]
    assert gradq_db.endswith("@postgres:5432/gradq")
    assert "--backend-store-uri" in services["mlflow"]["command"]
    assert services["mlflow"]["command"][services["mlflow"]["command"].index(
        "--backend-store-uri") + 1].endswith("@postgres:5432/mlflow")  # fmt: skip
    allowed = services["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert {"mlflow:5000", "localhost:*", "127.0.0.1:*"} <= set(allowed)
    assert services["api"]["environment"]["GRADQ_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_the_image_holds_every_package_and_module_pyproject_installs():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [name.rstrip("*") for name in setuptools["packages"]["find"]["include"]]
    modules = [f"{name}.py" for name in setuptools["py-modules"]]
    dockerfile = (REPO / "Dockerfile").read_text()
    allowed = (REPO / ".dockerignore").read_text().split()
    for package in packages:
        assert f"COPY {package} /src/{package}" in dockerfile
        assert f"!{package}/" in allowed
    for module in modules:
        assert re.search(rf"^COPY .*\b{re.escape(module)}\b.* /src/$", dockerfile, re.MULTILINE)
        assert f"!{module}" in allowed
