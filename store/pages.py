"""Newest-first pages of rows (jobs, sweeps) keyed by (created_at, id): a cursor is the last
row's key, so that paging stays stable while newer rows are added."""

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

T = TypeVar("T")
_ID = re.compile(r"[0-9a-f]{32}")  # a job's or a sweep's id


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    next_cursor: str | None


def newest_first(
    session: Session, query: Select, model: Any, cursor: str | None, limit: int
) -> Page:
    """``query``'s rows of ``model``, newest first, ``limit`` of them after ``cursor`` (the
    ``next_cursor`` of the page before; ValueError if this API did not make it)."""
    query = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    if cursor:
        created_at, row_id = decode_cursor(cursor)
        query = query.where(
            or_(
                model.created_at < created_at,
                and_(model.created_at == created_at, model.id < row_id),
            )
        )
    rows = list(session.scalars(query))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return Page(rows[:limit], next_cursor)


def encode_cursor(row: Any) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """ValueError if the cursor was not made by encode_cursor: its time has a zone (made
    UTC here, where an offset can still overflow) and its id is 32 hex digits."""
    try:
        created_at, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None or not _ID.fullmatch(row_id):
            raise ValueError(cursor)
        return moment.astimezone(UTC), row_id
    except Exception as error:
        raise ValueError("not a cursor returned by this API") from error
