"""Request bodies: a cap enforced while they stream in rather than after they are stored, and
routes that take JSON refusing any other body before reading a byte of it."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import params
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import APIError


def too_large(limit: int) -> APIError:
    return APIError(413, "payload_too_large", f"the request body is over {limit} bytes")


def is_json(content_type: str) -> bool:
    media_type = content_type.split(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class BodySizeLimit:
    """Raises a 413 APIError from ``receive`` once the body passes its limit (at once if
    Content-Length says so); the app's error handlers turn it into the JSON answer. Multipart
    bodies of the upload routes (method, path) get ``upload_limit``; every other body gets
    ``json_limit`` whatever its Content-Type says: FastAPI holds those whole in memory."""

    def __init__(
        self,
        app: ASGIApp,
        json_limit: int,
        upload_limit: int,
        upload_routes: frozenset[tuple[str, str]],
    ):
        self.app = app
        self.json_limit, self.upload_limit = json_limit, upload_limit
        self.upload_routes = upload_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        is_upload = (scope["method"], scope["path"]) in self.upload_routes and headers.get(
            "content-type", ""
        ).startswith("multipart/form-data")
        limit = self.upload_limit if is_upload else self.json_limit
        declared = headers.get("content-length", "")
        announced_too_large = declared.isdigit() and int(declared) > limit
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            if announced_too_large:
                raise too_large(limit)
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large(limit)
            return message

        await self.app(scope, receive_within_limit, send)


class JSONBodyRoute(APIRoute):
    """A route whose body is JSON answers 415 to any other Content-Type before FastAPI reads
    the body (it reads it whole, then validates). Form routes are left as they are."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None or isinstance(self.body_field.field_info, params.Form):
            return handler

        async def json_only(request: Request) -> Response:
            content_type = request.headers.get("content-type", "")
            if not is_json(content_type):
                raise APIError(
                    415,
                    "unsupported_media_type",
                    f"send the body as application/json, not {content_type or 'no Content-Type'}",
                    "Content-Type",
                )
            try:
                return await handler(request)
            except HTTPException as error:  # FastAPI's own 400: bytes json.loads cannot read
                if error.status_code != 400 or isinstance(error, APIError):
                    raise
                raise APIError(
                    422,
                    "invalid_json",
                    "the request body is not valid JSON: not UTF-8 text, or nested too deeply",
                ) from error

        return json_only
