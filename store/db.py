"""Engines and sessions, with SQLite made fit for several processes (WAL, busy timeout)."""

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000
MIN_SQLITE = (3, 35)  # RETURNING
T = TypeVar("T")
log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so that the API, the worker
    and the reconciler can write without 'database is locked'."""
    if url.startswith("sqlite"):
        if sqlite3.sqlite_version_info < MIN_SQLITE:  # create_job's INSERT ... RETURNING
            raise RuntimeError(
                f"gradq needs SQLite >= {'.'.join(map(str, MIN_SQLITE))}; this Python has "
                f"{sqlite3.sqlite_version}: use PostgreSQL (GRADQ_DATABASE_URL) or a newer Python"
            )
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pool_pre_ping: a restarted PostgreSQL leaves dead connections in the pool.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes under WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits at the end of the block, or rolls back on error."""
    with factory() as session, session.begin():
        yield session


def in_transaction_retrying(
    factory: sessionmaker[Session], work: Callable[[Session], T], seconds: float
) -> T:
    """``work(session)`` in a transaction of its own, tried again while the database cannot
    be reached (a restarting PostgreSQL), for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    pause = 0.1
    while True:
        try:
            with transaction(factory) as session:
                return work(session)
        except (OperationalError, InterfaceError) as error:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("database unreachable, trying again in %.1f s: %s", pause, error)
        time.sleep(pause)
        pause = min(pause * 2, 2.0)
