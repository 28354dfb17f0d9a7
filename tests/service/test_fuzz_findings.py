"""What the schemathesis run (test_fuzz.py) found, kept as plain examples: answers it could not
find in the OpenAPI document, and bodies the API did not answer in its error shape."""

import pytest
from sqlalchemy import func, select

from store.tables import Job

ONE_DATABASE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def count_jobs(rows) -> int:
    with rows() as session:
        return session.scalar(select(func.count()).select_from(Job))


@pytest.mark.parametrize(
    "body",
    [b"k\xff",  # what the fuzzer sent: not UTF-8
     b'{"dataset": {"name": "faces"}, "tags": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
)  # fmt: skip
def test_a_json_body_python_cannot_decode_is_422_invalid_json_not_400(
    client, rows, redis_queue, body
):
    response = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert count_jobs(rows) == 0
    assert redis_queue.messages() == []


@ONE_DATABASE
def test_a_malformed_multipart_upload_is_a_documented_400_in_the_error_shape(client):
    response = client.post(
        "/v1/datasets",
        content=b"--x\r\n[{}, 1632]--x--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_body"
    documented = client.get("/openapi.json").json()["paths"]["/v1/datasets"]["post"]
    assert "400" in documented["responses"]


ERRORS = {
    ("/v1/jobs", "post"): {"401", "409", "413", "415", "422", "503"},
    ("/v1/jobs", "get"): {"401", "422", "503"},
    ("/v1/jobs/{job_id}", "get"): {"401", "404", "422", "503"},
    ("/v1/jobs/{job_id}/metrics", "get"): {"401", "404", "422", "503"},
    ("/v1/jobs/{job_id}/cancel", "post"): {"401", "404", "409", "422", "503"},
    ("/v1/datasets", "post"): {"400", "401", "409", "413", "422", "503"},
    ("/v1/datasets/{name}", "get"): {"401", "404", "422", "503"},
}


@ONE_DATABASE
def test_the_openapi_document_describes_each_error_an_operation_answers_in_its_shape(client):
    document = client.get("/openapi.json").json()

    for (path, method), statuses in ERRORS.items():
        responses = document["paths"][path][method]["responses"]
        assert statuses <= set(responses), (path, method, set(responses))
        for status in statuses:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, method, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]
