"""CORS for the public API, answered at the gateway (pure ASGI, outermost layer).

* A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
  answered here with 204 and never reaches authentication or a service; from an origin
  not in ``cors_allow_origins`` it is a 403 problem without CORS headers.
* Other requests from an allowed origin get ``Access-Control-Allow-Origin`` (``*`` when
  any origin is allowed, else the origin itself with ``Vary: Origin``) and
  ``Access-Control-Expose-Headers`` for the headers clients need to read (request id,
  rate limits, ``Retry-After``, ``Idempotent-Replayed``, ``Location``, ``ETag``) — also
  on 401/429 answers, so browser code can see why it was refused.
* Credentials (cookies) are never allowed: the API authenticates with bearer tokens.
"""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Message, Receive, Send

from crm_gateway.proxy import send_problem
from crm_gateway.settings import GatewaySettings

ALLOW_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = (
    b"authorization, content-type, accept, accept-language, content-language, "
    b"idempotency-key, if-match, if-none-match, x-request-id, traceparent, tracestate"
)
EXPOSE_HEADERS = (
    b"x-request-id, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, "
    b"retry-after, idempotent-replayed, location, etag"
)


class CORSLayer:
    def __init__(self, app: ASGIApp, settings: GatewaySettings) -> None:
        self.app = app
        origins = [o.strip().rstrip("/") for o in settings.cors_allow_origins if o.strip()]
        self.enabled = bool(origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(o.encode("latin-1") for o in origins)
        self.max_age = str(settings.cors_max_age_seconds).encode()

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        origin: bytes | None = None
        preflight = False
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = True
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self.any_origin or origin in self.origins
        if preflight and scope["method"] == "OPTIONS":
            if not allowed:
                await send_problem(
                    send, 403, "This origin may not call the API.", instance=scope["path"]
                )
                return
            headers = [
                *self._origin_headers(origin),
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", self.max_age),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if not allowed:
            await self.app(scope, receive, send)
            return
        extra = [*self._origin_headers(origin), (b"access-control-expose-headers", EXPOSE_HEADERS)]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (n, v)
                    for n, v in message.get("headers", ())
                    if not n.lower().startswith(b"access-control-")
                ]
                headers.extend(extra)
                message = {**message, "headers": headers}  # type: ignore[typeddict-item]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _origin_headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
