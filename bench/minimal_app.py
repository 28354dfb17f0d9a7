"""The baselines of bench/service.py, the least each measured path can do on the same servers.

- ``create_app``: a FastAPI endpoint that inserts one row into a one-table PostgreSQL database
  through SQLAlchemy, then calls Celery's ``send_task`` on the same Redis as gradq's API:
  ``uvicorn --factory minimal_app:create_app --app-dir bench``.
- ``celery_app``: a trivial task that records when it started, on a queue of its own:
  ``celery -A minimal_app:celery_app worker`` (with bench/ on PYTHONPATH).

Both read BENCH_SQL_URL and BENCH_BROKER_URL from the environment.
"""

import json
import os
import time
import uuid
from functools import lru_cache
from typing import Any

import redis
from celery import Celery
from fastapi import FastAPI
from sqlalchemy import JSON, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

QUEUE = "bench_baseline"  # not gradq's queue ("celery"): the two workers never share messages
STARTS_KEY = "bench:task_starts"  # a Redis list of [sent_at, started_at] per task run
TASK = "bench.noop"


class Base(DeclarativeBase):
    pass


class Submission(Base):
    __tablename__ = "submissions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


def make_celery(broker_url: str) -> Celery:
    """The options of gradq's worker app that bear on latency: acks late, prefetch 1, JSON."""
    app = Celery("bench-baseline", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": 24 * 3600},
    )
    return app


def create_app() -> FastAPI:
    # The same pool as gradq's engine (store/db.py), so only the work per request differs.
    engine = create_engine(os.environ["BENCH_SQL_URL"], pool_pre_ping=True, pool_size=10)
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    celery = make_celery(os.environ["BENCH_BROKER_URL"])
    app = FastAPI()

    @app.post("/submit", status_code=202)
    def submit(body: dict[str, Any]) -> dict[str, str]:  # sync, as gradq's route: threadpool
        row = Submission(id=uuid.uuid4().hex, body=body)
        with sessions.begin() as session:
            session.add(row)
        celery.send_task(TASK, args=[time.time()])
        return {"id": row.id}

    return app


celery_app = make_celery(os.environ.get("BENCH_BROKER_URL", "memory://"))


@lru_cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_BROKER_URL"])


@celery_app.task(name=TASK)
def noop(sent_at: float) -> None:
    started = time.time()
    _redis().rpush(STARTS_KEY, json.dumps([sent_at, started]))
