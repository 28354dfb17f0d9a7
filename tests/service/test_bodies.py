"""Request bodies are capped by the route, not by what the client declares: a JSON route reads
at most the JSON cap whatever the Content-Type, and refuses a non-JSON body before reading it.
The bytes the app pulled are counted by the request body's own generator."""

import anyio
import httpx
import pytest
from sqlalchemy import func, select

from service.app import MAX_JSON_BYTES, create_app
from store.tables import Job

CHUNK = 1024 * 1024


class CountingBody:
    """A streamed request body of ``size`` bytes (no Content-Length) that counts what was
    pulled from it."""

    def __init__(self, size: int, first: bytes = b""):
        self.size, self.first, self.pulled = size, first, 0

    async def __aiter__(self):
        sent = 0
        if self.first:
            self.pulled += len(self.first)
            sent = len(self.first)
            yield self.first
        while sent < self.size:
            chunk = bytes(min(CHUNK, self.size - sent))
            sent += len(chunk)
            self.pulled += len(chunk)
            yield chunk


def post(app, path: str, body: CountingBody, content_type: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.post(path, content=body, headers={"Content-Type": content_type})

    return anyio.run(send)


@pytest.fixture
def app(make_settings, redis_queue):
    return create_app(make_settings(broker_url=redis_queue.url))


def count_jobs(rows) -> int:
    with rows() as session:
        return session.scalar(select(func.count()).select_from(Job))


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain"],
)
def test_a_non_json_body_sent_to_submit_a_job_is_415_before_a_byte_of_it_is_read(
    app, rows, content_type
):
    body = CountingBody(64 * CHUNK)

    response = post(app, "/v1/jobs", body, content_type)

    assert response.status_code == 415
    assert response.json()["error"]["field"] == "Content-Type"
    assert body.pulled == 0
    assert count_jobs(rows) == 0


def test_a_json_body_over_the_cap_is_413_after_reading_no_more_than_the_cap(app, rows):
    body = CountingBody(64 * CHUNK, first=b'{"dataset": {"name": "')

    response = post(app, "/v1/jobs", body, "application/json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert body.pulled <= MAX_JSON_BYTES + CHUNK
    assert count_jobs(rows) == 0


def test_the_dataset_upload_route_alone_reads_multipart_bodies_past_the_json_cap(app):
    part = (
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.npz"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    body = CountingBody(MAX_JSON_BYTES + 4 * CHUNK, first=part)

    response = post(app, "/v1/datasets", body, "multipart/form-data; boundary=x")

    assert response.status_code != 413
    assert body.pulled > MAX_JSON_BYTES
