"""The Celery tasks: thin, they find their resources and call plain functions."""

import os
from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from settings import get_settings
from store.db import make_engine, make_session_factory
from workers.celery_app import app
from workers.run import run_job


@lru_cache
def session_factory(url: str) -> sessionmaker[Session]:
    """One engine per worker process, made on first use: in the forked child, never shared
    with the parent's connections."""
    return make_session_factory(make_engine(url))


@app.task(name="gradq.train", bind=True)
def train_job(self, job_id: str) -> None:
    """Train job ``job_id`` (a row of the jobs table) and record its outcome."""
    settings = get_settings()
    owner = f"{self.request.hostname or 'worker'}/{os.getpid()}"
    run_job(job_id, settings, session_factory(settings.sql_url), owner)
