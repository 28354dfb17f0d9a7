"""Requests crafted to break storage or a later MLflow call: non-finite and huge numbers, tags
MLflow refuses or reserves, NUL characters (PostgreSQL refuses them), forged cursors. Each is
a 422 naming the field (or a 404 for an id that cannot exist), on SQLite and PostgreSQL, and
leaves no job behind."""

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from contract.spec import MAX_TAGS
from store.tables import Job

FACES = {"dataset": {"name": "faces"}, "training": {"epochs": 10}}


def count_jobs(rows) -> int:
    with rows() as session:
        return session.scalar(select(func.count()).select_from(Job))


def post_raw(client, body: str, headers: dict | None = None):
    headers = {"Content-Type": "application/json", **(headers or {})}
    return client.post("/v1/jobs", content=body.encode(), headers=headers)


def assert_refused(response, field: str, rows, redis_queue, status: int = 422) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert count_jobs(rows) == 0
    assert redis_queue.messages() == []


@pytest.mark.parametrize("number", ["1e400", "-Infinity", "NaN", "1e300"])
@pytest.mark.parametrize(
    "field", ["training.l2", "training.decay_rate", "training.learning_rate",
              "training.validation_split"],
)  # fmt: skip
def test_a_non_finite_or_huge_float_is_422_naming_the_field(
    client, rows, redis_queue, field, number
):
    section, name = field.split(".")
    body = f'{{"dataset": {{"name": "faces"}}, "{section}": {{"{name}": {number}}}}}'

    response = post_raw(client, body)

    assert_refused(response, field, rows, redis_queue)


@pytest.mark.parametrize(
    "key",
    ["owner!", "../x", "a/../b", "/etc", ".", "", "x" * 251, "tab\there", "naïve?",
     "mlflow.runName", "mlflow.parentRunId", "mlflow.source.name", "MLflow.user",
     "gradq.job_id", "gradq.attempt", "nul\x00key"],
)  # fmt: skip
def test_a_tag_key_mlflow_refuses_or_reserves_is_422_naming_it(client, rows, redis_queue, key):
    response = client.post("/v1/jobs", json=FACES | {"tags": {"owner": "ada", key: "v"}})

    assert_refused(response, f"tags.{key}", rows, redis_queue)


@pytest.mark.parametrize("value", ["x" * 8001, "nul\x00value"])
def test_a_tag_value_mlflow_or_postgresql_refuses_is_422_naming_its_key(
    client, rows, redis_queue, value
):
    response = client.post("/v1/jobs", json=FACES | {"tags": {"note": value}})

    assert_refused(response, "tags.note", rows, redis_queue)


def test_more_tags_than_the_cap_are_422(client, rows, redis_queue):
    tags = {f"tag{i}": "v" for i in range(MAX_TAGS + 1)}

    response = client.post("/v1/jobs", json=FACES | {"tags": tags})

    assert_refused(response, "tags", rows, redis_queue)
    assert str(MAX_TAGS) in response.json()["error"]["message"]


def test_tags_mlflow_accepts_are_stored(client):
    tags = {"owner": "ada", "team/vision": "x", "with space:colon": "y", "v1.2-rc_3": "x" * 8000}

    response = client.post("/v1/jobs", json=FACES | {"tags": tags})

    assert response.status_code == 202, response.text
    assert response.json()["spec"]["tags"] == tags


@pytest.mark.parametrize(
    ("spec", "field"),
    [(FACES | {"experiment": "a\x00b"}, "experiment"),
     (FACES | {"name": "run\x00"}, "name"),
     ({"dataset": {"name": "fa\x00ces"}}, "dataset.name")],
)  # fmt: skip
def test_a_nul_character_in_a_spec_string_is_422_naming_the_field(
    client, rows, redis_queue, spec, field
):
    response = client.post("/v1/jobs", json=spec)

    assert_refused(response, field, rows, redis_queue)
    assert "NUL" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [('"tags": {"note": "a\\ud800"}', "tags.note"),
     ('"tags": {"\\udfffkey": "v"}', "tags.\ufffd\ufffd\ufffdkey"),  # as pydantic names it
     ('"name": "run \\udbff"', "name")],
)  # fmt: skip
def test_a_lone_surrogate_in_a_spec_string_is_422_naming_the_field_and_stores_nothing(
    client, rows, redis_queue, fields, field
):
    """Found by the fuzz run: a tag value "\\ud800" was stored and sent, then the answer
    could not be encoded (a 500, and a job the client never heard of)."""
    response = post_raw(client, f'{{"dataset": {{"name": "faces"}}, {fields}}}')

    assert_refused(response, field, rows, redis_queue)


def test_a_nul_character_in_the_idempotency_key_is_422_naming_the_header(client, rows, redis_queue):
    response = post_raw(client, json.dumps(FACES), {"Idempotency-Key": "key\x00"})

    assert_refused(response, "Idempotency-Key", rows, redis_queue)


@pytest.mark.parametrize("parameter", ["experiment", "sweep_id"])
def test_a_nul_character_in_a_list_filter_is_422_naming_it(client, parameter):
    response = client.get(f"/v1/jobs?{parameter}=a%00b")

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == parameter


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/jobs/a%00b"), ("GET", "/v1/jobs/a%00b/metrics"),
     ("POST", "/v1/jobs/a%00b/cancel"), ("GET", "/v1/datasets/a%00b")],
)  # fmt: skip
def test_an_id_or_name_with_a_nul_character_is_404(client, method, path):
    response = client.request(method, path)

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


JOB_ID = "0" * 32


@pytest.mark.parametrize(
    "cursor",
    [cursor_of(f"2024-01-01T00:00:00|{JOB_ID}"),  # a naive time
     cursor_of(f"0001-01-01T00:00:00+01:00|{JOB_ID}"),  # before year 1 in UTC
     cursor_of(f"9999-12-31T23:59:59-01:00|{JOB_ID}"),  # after year 9999 in UTC
     cursor_of("2024-01-01T00:00:00+00:00|a\x00b"),
     cursor_of("2024-01-01T00:00:00+00:00|' OR 1=1 --"),
     cursor_of("2024-01-01T00:00:00+00:00"),
     cursor_of("2024-01-01T00:00:00+00:00|a|b"),
     "gICA",  # bytes that are not UTF-8
     "not-a-cursor", "", "=", "%00"],
)  # fmt: skip
def test_a_malformed_or_forged_cursor_is_422_naming_it(client, cursor):
    submitted = client.post("/v1/jobs", json=FACES)
    assert submitted.status_code == 202

    response = client.get("/v1/jobs", params={"cursor": cursor})

    if cursor == "":  # no cursor: the first page
        assert response.status_code == 200
        return
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "cursor"


def test_a_cursor_from_a_page_still_pages_in_any_time_zone(client):
    ids = [client.post("/v1/jobs", json=FACES).json()["id"] for _ in range(3)]
    first = client.get("/v1/jobs", params={"limit": 1}).json()
    created_at, job_id = base64.urlsafe_b64decode(first["next_cursor"]).decode().split("|")
    # The same instant, written in another zone.
    shifted = datetime.fromisoformat(created_at).astimezone(timezone(timedelta(hours=2)))

    cursor = cursor_of(f"{shifted.isoformat()}|{job_id}")
    rest = client.get("/v1/jobs", params={"cursor": cursor}).json()

    assert [job["id"] for job in first["jobs"] + rest["jobs"]] == ids[::-1]
