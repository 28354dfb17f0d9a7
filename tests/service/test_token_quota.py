"""GRADQ_MAX_QUEUED_JOBS_PER_TOKEN: a token with that many jobs queued or running gets a 429
with Retry-After; the job rows record a fingerprint of the token, never the token itself."""

import collections
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from service.security import token_fingerprint
from service.stack import api_command
from store.db import make_engine, make_session_factory
from store.migrate import upgrade
from store.tables import Job
from tests.processes import gradq_env, start, wait_until
from tests.servers import free_port, fresh_postgres_database

SPEC = {"dataset": {"name": "faces"}, "training": {"epochs": 10}}
TOKENS = ["tok1", "tok2"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def capped_client(make_client):
    """The API with two tokens, each allowed 3 jobs queued or running, on the filesystem broker."""
    return make_client(broker_url="", api_tokens=TOKENS, max_queued_jobs_per_token=3)


def submit(client, token: str, key: str | None = None, spec: dict = SPEC):
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return client.post("/v1/jobs", json=spec, headers=headers)


def test_a_token_at_its_cap_gets_429_with_retry_after_and_the_error_shape(capped_client, rows):
    accepted = [submit(capped_client, "tok1") for _ in range(3)]
    assert [answer.status_code for answer in accepted] == [202] * 3

    refused = submit(capped_client, "tok1")

    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) > 0
    error = refused.json()["error"]
    assert (error["code"], error["field"]) == ("too_many_jobs", "Authorization")
    assert "3 jobs queued or running" in error["message"]
    assert "GRADQ_MAX_QUEUED_JOBS_PER_TOKEN" in error["message"]
    with rows() as session:  # the refused job left no row
        assert len(session.scalars(select(Job)).all()) == 3


def test_the_cap_is_per_token(capped_client):
    for _ in range(3):
        assert submit(capped_client, "tok1").status_code == 202

    assert submit(capped_client, "tok2").status_code == 202
    assert submit(capped_client, "tok1").status_code == 429


def test_running_jobs_count_and_finished_ones_free_their_place(capped_client, rows):
    ids = [submit(capped_client, "tok1").json()["id"] for _ in range(3)]
    with rows() as session, session.begin():
        session.execute(update(Job).where(Job.id == ids[0]).values(status="running"))
    assert submit(capped_client, "tok1").status_code == 429

    with rows() as session, session.begin():
        session.execute(update(Job).where(Job.id == ids[1]).values(status="succeeded"))

    assert submit(capped_client, "tok1").status_code == 202
    assert submit(capped_client, "tok1").status_code == 429


def test_an_idempotent_replay_at_the_cap_answers_the_existing_job(capped_client):
    first = submit(capped_client, "tok1", key="k-1")
    for _ in range(2):
        assert submit(capped_client, "tok1").status_code == 202

    replay = submit(capped_client, "tok1", key="k-1")

    assert replay.status_code == 202, replay.text
    assert replay.json()["id"] == first.json()["id"]
    assert submit(capped_client, "tok1", key="k-2").status_code == 429


def test_jobs_record_the_tokens_fingerprint_and_never_the_token(capped_client, rows):
    job_id = submit(capped_client, "tok2").json()["id"]

    with rows() as session:
        job = session.get(Job, job_id)
    assert job.token_fingerprint == token_fingerprint("tok2")
    assert job.token_fingerprint != token_fingerprint("tok1")
    assert "tok2" not in job.token_fingerprint
    assert len(job.token_fingerprint) == 16


def test_without_tokens_there_is_no_cap_and_no_fingerprint(make_client, rows):
    client = make_client(broker_url="", max_queued_jobs_per_token=1)

    answers = [client.post("/v1/jobs", json=SPEC) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [202] * 3
    with rows() as session:
        assert {job.token_fingerprint for job in session.scalars(select(Job))} == {None}


def test_a_cap_of_zero_means_no_cap(make_client):
    client = make_client(broker_url="", api_tokens=TOKENS, max_queued_jobs_per_token=0)

    assert [submit(client, "tok1").status_code for _ in range(4)] == [202] * 4


def test_the_setting_is_read_from_the_environment(monkeypatch):
    from settings import Settings

    monkeypatch.setenv("GRADQ_MAX_QUEUED_JOBS_PER_TOKEN", "7")
    assert Settings(_env_file=None).max_queued_jobs_per_token == 7
    monkeypatch.delenv("GRADQ_MAX_QUEUED_JOBS_PER_TOKEN")
    assert Settings(_env_file=None).max_queued_jobs_per_token == 1000


@contextmanager
def real_database(kind: str, home: Path) -> Iterator[str]:
    if kind == "postgres":
        with fresh_postgres_database() as url:
            yield url
        return
    home.mkdir(parents=True)
    url = f"sqlite:///{home / 'gradq.db'}"
    upgrade(url)
    yield url


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_concurrent_submissions_to_a_real_server_never_pass_the_cap(tmp_path, kind):
    cap, requests = 5, 40
    with real_database(kind, tmp_path / "home") as url:
        port = free_port()
        env = gradq_env(
            home=tmp_path / "home", database_url=url, broker_url="", api_tokens="tok1,tok2",
            max_queued_jobs_per_token=cap, mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        )  # fmt: skip
        api = start(api_command("127.0.0.1", port), tmp_path / "api.log", env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _answers(f"{base}/healthz"), api, "uvicorn", 60)
            local = threading.local()
            barrier = threading.Barrier(20)

            def post(n: int) -> tuple[str, int]:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(base_url=base, timeout=60)
                    barrier.wait()  # every thread connected, then all at once
                token = TOKENS[n % 2]
                return token, local.client.post("/v1/jobs", json=SPEC, headers=bearer(token))

            with ThreadPoolExecutor(max_workers=20) as pool:
                answers = list(pool.map(post, range(requests)))
        finally:
            api.stop()
        statuses = collections.Counter((token, r.status_code) for token, r in answers)
        engine = make_engine(url)
        with make_session_factory(engine)() as session:
            stored = collections.Counter(session.scalars(select(Job.token_fingerprint)))
        engine.dispose()
    assert statuses == {("tok1", 202): cap, ("tok1", 429): requests // 2 - cap,
                        ("tok2", 202): cap, ("tok2", 429): requests // 2 - cap}  # fmt: skip
    assert stored == {token_fingerprint("tok1"): cap, token_fingerprint("tok2"): cap}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
