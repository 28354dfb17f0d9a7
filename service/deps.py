"""Request dependencies: the database session and the app's settings."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.errors import APIError
from settings import Settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


# async: no I/O, so FastAPI calls it in the event loop instead of the thread pool.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def require_json(request: Request) -> None:
    """415 unless the body is declared JSON (checked before the body is validated)."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise APIError(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {content_type or 'no Content-Type'}",
            "Content-Type",
        )
