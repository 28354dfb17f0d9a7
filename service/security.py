"""Bearer tokens: when any are configured, every route but the probes needs one."""

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_response

OPEN_PATHS = ("/healthz", "/readyz")


class BearerTokenAuth:
    def __init__(self, app: ASGIApp, tokens: list[str]):
        self.app = app
        self.tokens = [token.encode() for token in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self._authorized(Headers(scope=scope).get("authorization", "")):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401,
            "unauthorized",
            "send Authorization: Bearer <token>",
            "Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def _authorized(self, header: str) -> bool:
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        candidate = presented.strip().encode()
        # Compare with every token, so that timing says nothing about which one nearly matched.
        matches = [hmac.compare_digest(candidate, token) for token in self.tokens]
        return any(matches)
