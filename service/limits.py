"""A cap on request bodies, enforced while they stream in rather than after they are stored."""

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import APIError


def too_large(limit: int) -> APIError:
    return APIError(413, "payload_too_large", f"the request body is over {limit} bytes")


class BodySizeLimit:
    """Raises a 413 APIError from ``receive`` once the body passes its limit (at once if
    Content-Length says so); the app's error handlers turn it into the JSON answer. Multipart
    uploads get ``upload_limit``, every other body ``json_limit``: FastAPI holds those whole
    in memory."""

    def __init__(self, app: ASGIApp, json_limit: int, upload_limit: int):
        self.app = app
        self.json_limit, self.upload_limit = json_limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        is_upload = headers.get("content-type", "").startswith("multipart/form-data")
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
