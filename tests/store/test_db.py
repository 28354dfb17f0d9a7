"""Engines: an SQLite too old for the statements gradq runs is refused with the reason."""

import sqlite3

import pytest

from store import db


def test_an_sqlite_without_returning_is_refused_with_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(RuntimeError, match=r"SQLite >= 3\.35; this Python has 3\.31\.1"):
        db.make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")


def test_this_pythons_sqlite_is_new_enough(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    engine.dispose()
    assert sqlite3.sqlite_version_info >= db.MIN_SQLITE
