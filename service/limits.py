"""A cap on request bodies, enforced while they stream in rather than after they are stored."""

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import APIError


def too_large(limit: int) -> APIError:
    return APIError(413, "payload_too_large", f"the request body is over {limit} bytes")


class BodySizeLimit:
    """Raises a 413 APIError from ``receive`` once the body passes ``limit`` bytes (at once if
    Content-Length says so); the app's error handlers turn it into the JSON answer."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        announced_too_large = declared.isdigit() and int(declared) > self.limit
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            if announced_too_large:
                raise too_large(self.limit)
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise too_large(self.limit)
            return message

        await self.app(scope, receive_within_limit, send)
