"""Probes, Prometheus metrics, bearer tokens, and a database that is down."""

import gc

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.servers import free_port

FACES = {"dataset": {"name": "faces"}, "training": {"epochs": 5}}
# What does not depend on the database runs on one.
ONE_DATABASE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@ONE_DATABASE
def test_healthz_is_always_ok(make_client):
    client = make_client(database_url=f"postgresql+psycopg2://x@127.0.0.1:{free_port()}/none")

    response = client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_200_when_sql_the_broker_and_mlflow_answer(
    make_client, redis_queue, mlflow_server
):
    client = make_client(broker_url=redis_queue.url, mlflow_tracking_uri=mlflow_server)

    response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert {name: check["ok"] for name, check in response.json()["checks"].items()} == {
        "sql": True,
        "broker": True,
        "mlflow": True,
    }


def test_readyz_accepts_the_filesystem_broker_and_a_local_tracking_store(make_client, tmp_path):
    client = make_client(broker_url="", mlflow_tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")

    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_naming_the_broker_on_a_closed_port(make_client, mlflow_server):
    client = make_client(
        broker_url=f"redis://127.0.0.1:{free_port()}/0", mlflow_tracking_uri=mlflow_server
    )

    response = client.get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert (checks["sql"]["ok"], checks["broker"]["ok"], checks["mlflow"]["ok"]) == (
        True,
        False,
        True,
    )


def test_readyz_is_503_when_mlflow_does_not_answer(make_client, redis_queue):
    client = make_client(broker_url=redis_queue.url)  # its tracking URI is a closed port

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["mlflow"]["ok"] is False


@ONE_DATABASE
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/v1/jobs", None), ("POST", "/v1/jobs", FACES), ("GET", "/v1/jobs/abc", None),
     ("POST", "/v1/jobs/abc/cancel", None), ("GET", "/v1/datasets", None)],
)  # fmt: skip
def test_a_database_that_is_down_is_503_with_retry_after_never_500(make_client, method, path, body):
    client = make_client(
        broker_url="", database_url=f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test"
    )

    response = client.request(method, path, json=body)

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) > 0


@ONE_DATABASE
def test_readyz_reports_the_database_that_is_down(make_client):
    client = make_client(
        broker_url="", database_url=f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test"
    )

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["sql"]["ok"] is False


@pytest.fixture
def secured(make_client, redis_queue):
    return make_client(broker_url=redis_queue.url, api_tokens="first-token,second-token")


@ONE_DATABASE
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/datasets", "/metrics", "/docs", "/nowhere"])
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", "first-token", "Basic Zmlyc3QtdG9rZW4=", "Bearer "]
)
def test_with_tokens_configured_a_request_without_a_valid_one_is_401(secured, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    response = secured.get(path, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@ONE_DATABASE
@pytest.mark.parametrize("token", ["first-token", "second-token"])
def test_with_tokens_configured_any_of_them_is_accepted(secured, token):
    headers = {"Authorization": f"Bearer {token}"}

    assert secured.get("/v1/jobs", headers=headers).status_code == 200
    assert secured.post("/v1/jobs", json=FACES, headers=headers).status_code == 202


@ONE_DATABASE
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_probes_need_no_token(secured, path):
    assert secured.get(path).status_code != 401


@ONE_DATABASE
def test_without_tokens_configured_no_authorization_is_needed(client):
    assert client.get("/v1/jobs").status_code == 200


@ONE_DATABASE
def test_metrics_count_requests_by_route_and_jobs_submitted(client):
    def sample(text: str, prefix: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    submitted = "gradq_jobs_submitted_total "
    listed = 'gradq_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"}'
    before = client.get("/metrics").text
    client.post("/v1/jobs", json=FACES)
    client.get("/v1/jobs/missing")

    after = client.get("/metrics").text

    assert sample(after, submitted) == sample(before, submitted) + 1
    assert sample(after, listed) == sample(before, listed) + 1
    assert "gradq_http_request_duration_seconds_bucket" in after


@ONE_DATABASE
def test_the_openapi_document_lists_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]

    expected = {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/metrics",
                "/v1/jobs/{job_id}/cancel", "/v1/datasets", "/v1/datasets/{name}"}  # fmt: skip
    assert expected <= set(paths)
    assert client.get("/docs").status_code == 200


@ONE_DATABASE
def test_what_the_server_loaded_at_startup_is_out_of_the_collectors_sight_until_shutdown(
    make_settings,
):
    # A full collection walked the ~125,000 objects of a started API in 70-100 ms, holding up
    # every request meanwhile (docs/benchmarks.md).
    gc.unfreeze()  # whatever an earlier test left frozen
    with TestClient(create_app(make_settings())) as client:
        frozen_while_serving = gc.get_freeze_count()
        assert client.get("/healthz").status_code == 200

    assert frozen_while_serving > 10_000
    assert gc.get_freeze_count() == 0
