"""Bearer tokens: when any are configured, every route but the probes needs one. The token a
request presented is known downstream only by its fingerprint (``request.state``)."""

import hashlib
import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_response

OPEN_PATHS = ("/healthz", "/readyz")
FINGERPRINT_STATE = "token_fingerprint"  # the request.state attribute that holds it


def token_fingerprint(token: str) -> str:
    """What the jobs table records of the token that submitted a job: 16 hex digits of a
    sha256, enough to tell tokens apart, too few and too one-way to give one back."""
    return hashlib.sha256(b"gradq-api-token:" + token.encode()).hexdigest()[:16]


class BearerTokenAuth:
    def __init__(self, app: ASGIApp, tokens: list[str]):
        self.app = app
        self.tokens = [token.encode() for token in tokens]
        self.fingerprints = [token_fingerprint(token) for token in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        matched = self._matching_token(Headers(scope=scope).get("authorization", ""))
        if matched is not None:
            scope.setdefault("state", {})[FINGERPRINT_STATE] = self.fingerprints[matched]
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

    def _matching_token(self, header: str) -> int | None:
        """The index of the token the header presents, or None."""
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        candidate = presented.strip().encode()
        # Compare with every token, so that timing says nothing about which one nearly matched.
        matches = [hmac.compare_digest(candidate, token) for token in self.tokens]
        return matches.index(True) if any(matches) else None
