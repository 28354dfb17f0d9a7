"""/readyz answers without a token and job links reach every token holder: neither shows a
credential, a query-string token or a path of the server."""

import pytest

from service.redaction import public_url, redact
from settings import Settings
from store import jobs as job_rows
from store.tables import Job
from tests.servers import free_port

ONE_DATABASE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PASSWORD, TOKEN = "s3cr3t-pw", "t0k3n-secret"


def assert_nothing_secret(text: str, *more: str) -> None:
    for secret in (PASSWORD, TOKEN, "alice", *more):
        assert secret not in text, text


def with_credentials(url: str) -> str:
    scheme, rest = url.split("://")
    return f"{scheme}://alice:{PASSWORD}@{rest}"


@ONE_DATABASE
def test_readyz_shows_an_mlflow_server_without_its_credentials(
    make_client, redis_queue, mlflow_server
):
    client = make_client(
        broker_url=redis_queue.url, mlflow_tracking_uri=with_credentials(mlflow_server)
    )

    response = client.get("/readyz")

    assert response.json()["checks"]["mlflow"]["ok"] is True
    assert response.json()["checks"]["mlflow"]["detail"].startswith(mlflow_server)
    assert_nothing_secret(response.text)


@ONE_DATABASE
def test_readyz_shows_a_database_tracking_store_without_its_credentials(make_client, redis_queue):
    store = f"postgresql+psycopg2://alice:{PASSWORD}@127.0.0.1:5432/mlflow?sslpassword={TOKEN}"
    client = make_client(broker_url=redis_queue.url, mlflow_tracking_uri=store)

    response = client.get("/readyz")

    assert_nothing_secret(response.text)


@ONE_DATABASE
def test_readyz_shows_no_server_path_of_the_filesystem_broker_or_a_local_store(
    make_client, tmp_path
):
    client = make_client(broker_url="", mlflow_tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")

    response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert str(tmp_path) not in response.text


@ONE_DATABASE
def test_readyz_shows_a_database_error_without_the_password_or_the_socket_path(make_client):
    socket_folder = "/nonexistent-gradq-socket-folder"
    url = f"postgresql+psycopg2://alice:{PASSWORD}@/test?host={socket_folder}&port={free_port()}"
    client = make_client(broker_url="", database_url=url)

    response = client.get("/readyz")

    assert response.status_code == 503
    sql = response.json()["checks"]["sql"]
    assert sql["ok"] is False and sql["detail"].startswith("OperationalError")
    assert_nothing_secret(response.text, socket_folder)


def test_a_job_links_to_its_mlflow_run_without_the_tracking_uris_credentials(make_client, rows):
    client = make_client(
        broker_url="",
        mlflow_ui_url="",
        mlflow_tracking_uri=f"http://alice:{PASSWORD}@mlflow.example:5000/?token={TOKEN}",
    )
    job_id = client.post("/v1/jobs", json={"dataset": {"name": "faces"}}).json()["id"]
    with rows() as session, session.begin():
        job_rows.set_mlflow_run(session, job_id, "7", "run123")

    job = client.get(f"/v1/jobs/{job_id}")
    listed = client.get("/v1/jobs")

    base = "http://mlflow.example:5000/#/experiments/7/runs"
    assert job.json()["mlflow_url"] == f"{base}/run123?workflowType=machine_learning"
    assert job.json()["mlflow_experiment_url"] == f"{base}?workflowType=machine_learning"
    assert_nothing_secret(job.text)
    assert_nothing_secret(listed.text)


def test_a_jobs_error_and_events_show_no_server_path(make_client, rows):
    client = make_client(broker_url="")
    job_id = client.post("/v1/jobs", json={"dataset": {"name": "faces"}}).json()["id"]
    error = f"OSError: /srv/gradq/checkpoints/{job_id}/x.npz: read-only file system"
    with rows() as session, session.begin():
        job_rows.record_event(session, session.get(Job, job_id), "queued", "queued", error)
        session.get(Job, job_id).error = error

    job = client.get(f"/v1/jobs/{job_id}")

    assert "/srv/gradq" not in job.text and job.json()["error"].startswith("OSError: <path>")
    assert job.json()["events"][-1]["detail"].startswith("OSError: <path>")


SETTINGS = Settings(
    _env_file=None,
    database_url=f"postgresql+psycopg2://gradq:{PASSWORD}@db:5432/gradq?sslmode=require",
    mlflow_tracking_uri=f"http://mlflow:5000/?access_token={TOKEN}",
    api_tokens="api-token-1",
)


@pytest.mark.parametrize(
    "text",
    [f"connection to server at db failed: password {PASSWORD} rejected",
     f"GET http://mlflow:5000/api/2.0/runs?access_token={TOKEN} failed",
     f"redis://alice:{PASSWORD}@cache:6379/0 refused",
     f"host=db user=gradq password={PASSWORD} dbname=gradq",
     "token api-token-1 was sent"],
)  # fmt: skip
def test_redacted_text_keeps_no_configured_secret_or_credentials(text):
    assert_nothing_secret(redact(text, SETTINGS), "api-token-1")


@pytest.mark.parametrize(
    "text",
    ['could not connect to socket "/var/run/postgresql/.s.PGSQL.5432"',
     "unable to open database file sqlite:////srv/gradq/mlflow.db",
     "No such file or directory: '/srv/gradq/datasets/x/data.npz'"],
)  # fmt: skip
def test_redacted_text_keeps_no_server_path(text):
    assert "/srv/gradq" not in redact(text, SETTINGS)
    assert "/var/run" not in redact(text, SETTINGS)


def test_a_public_url_keeps_scheme_host_port_and_path_only():
    url = f"https://alice:{PASSWORD}@mlflow.example:8443/ui/?token={TOKEN}#runs"

    assert public_url(url) == "https://mlflow.example:8443/ui/"
