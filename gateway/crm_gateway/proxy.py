"""The reverse proxy: a pure ASGI app that streams requests to the owning service.

Per request: resolve the route, rebuild the header set (drop hop-by-hop and every
identity/forwarding header the client sent, add our own ``X-Forwarded-*`` (with
``X-Forwarded-Proof``, see ``crm_lib.client_ip``),
``X-Request-ID`` and W3C trace context), stream the body up through the upstream's
pooled aiohttp session and stream the answer back. Failures answer with RFC 9457
problem documents: 404 unknown route, 413 body too large, 502 upstream unreachable,
504 upstream too slow.

Extension points for later layers (authentication, rate limits, idempotency), which
wrap this app as pure ASGI middleware (see ``crm_gateway.app.create_app``):

* ``scope[ROUTE_KEY]``: the resolved :class:`~crm_gateway.routing.Route` (or ``None``
  for an unknown path), set by the dispatcher before the layers run.
* ``scope[UPSTREAM_HEADERS_KEY]``: a list of ``(name, value)`` byte pairs a layer
  wants sent upstream (e.g. the verified ``x-tenant-id``). They are appended after
  the client's headers were filtered, so they are the only identity headers the
  service sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
from litestar.types import Receive, Scope, Send
from yarl import URL

from crm_gateway.circuit import CircuitBreaker
from crm_gateway.metrics import PROXY_DURATION, PROXY_ERRORS, PROXY_REQUESTS
from crm_gateway.routing import Route, RouteTable
from crm_gateway.settings import GatewaySettings
from crm_gateway.upstreams import UpstreamPool
from crm_lib.client_ip import FORWARDED_PROOF, forwarded_proof
from crm_lib.http import PROBLEM_JSON, problem_response
from crm_lib.telemetry import describe_error, get_logger, inject_headers, request_id_var

log = get_logger("crm.gateway.proxy")

ROUTE_KEY = "crm.route"
UPSTREAM_HEADERS_KEY = "crm.upstream_headers"

# RFC 9110 §7.6.1 hop-by-hop headers, plus ones the gateway always sets itself.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)
_DROP_REQUEST = _HOP_BY_HOP | {
    b"host",  # aiohttp sends the upstream's; the original goes in X-Forwarded-Host
    b"expect",  # 100-continue is negotiated between client and gateway only
    b"forwarded",
    b"x-real-ip",
    b"x-request-id",  # replaced by the validated id of RequestContextMiddleware
    b"traceparent",  # replaced by the gateway span's context
    b"tracestate",
    b"baggage",
}
# Identity and forwarding headers are set by the gateway only; never trust the client's.
_DROP_REQUEST_PREFIXES = (b"x-tenant-", b"x-user-", b"x-principal", b"x-forwarded-", b"proxy-")
_DROP_RESPONSE = _HOP_BY_HOP | {
    b"x-request-id",  # the gateway's RequestContextMiddleware adds it
    b"server",  # the gateway's server adds its own date/server
    b"date",
}
_DROP_RESPONSE_PREFIXES = (b"proxy-",)

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
_KNOWN_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
# Answers of an upstream that count as "unavailable" for its circuit breaker.
_UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
_RETRYABLE = (
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
)


async def send_problem(
    send: Send,
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    title: str | None = None,
    type_: str | None = None,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer from pure ASGI with crm_lib's RFC 9457 problem document."""
    doc = problem_response(status, detail, title=title, type_=type_, instance=instance).content
    body = msgspec.json.encode(doc)
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class _RequestBody:
    """The client's body as an async iterator for aiohttp, counted against the limit."""

    __slots__ = ("disconnected", "finished", "limit", "receive", "received", "too_large")

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.received = 0
        self.too_large = False
        self.disconnected = False
        self.finished = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            message: Any = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                self.received += len(chunk)
                if self.received > self.limit:
                    self.too_large = True
                    raise _BodyTooLarge
                yield chunk
            if not message.get("more_body", False):
                self.finished = True
                return


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _has_dot_segment(path: str) -> bool:
    return "/." in path and any(seg in (".", "..") for seg in path.split("/"))


class ProxyApp:
    """Pure ASGI reverse proxy over an :class:`UpstreamPool`."""

    def __init__(self, settings: GatewaySettings, routes: RouteTable, pool: UpstreamPool) -> None:
        self.settings = settings
        self.routes = routes
        self.pool = pool
        self.breakers = {
            name: CircuitBreaker(
                name, settings.circuit_failure_threshold, settings.circuit_cooldown_seconds
            )
            for name in pool.urls
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # websockets are not proxied
            return
        path: str = scope["path"]
        route: Route | None = (
            scope[ROUTE_KEY] if ROUTE_KEY in scope else self.routes.resolve(path)  # type: ignore[literal-required]
        )
        if route is None:
            PROXY_ERRORS.labels("none", "not_found").inc()
            await send_problem(send, 404, f"No API route for {path}", instance=path)
            return
        if _has_dot_segment(path):
            PROXY_ERRORS.labels(route.service, "bad_path").inc()
            await send_problem(send, 400, "Dot segments are not allowed in paths", instance=path)
            return
        session = self.pool.sessions.get(route.service)
        if session is None:
            await send_problem(send, 503, "The gateway is not started", instance=path)
            return
        breaker = self.breakers[route.service]
        wait = breaker.admit()
        if wait is not None:
            PROXY_ERRORS.labels(route.service, "circuit_open").inc()
            await send_problem(
                send,
                503,
                f"The {route.service} service is unavailable; retry in {wait} s.",
                instance=path,
                type_="https://errors.crm.example/service-unavailable",
                extra_headers=[(b"retry-after", str(wait).encode())],
            )
            return
        try:
            await self._proxy(scope, receive, send, route, session, breaker)
        except BaseException:
            breaker.abandon()
            raise

    def _upstream_headers(self, scope: Any) -> tuple[list[tuple[str, str]], bytes | None, bool]:
        """Filtered client headers (+ ours); the raw Content-Length; chunked or not."""
        out: list[tuple[str, str]] = []
        connection: bytes | None = None
        host: bytes | None = None
        content_length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name in _DROP_REQUEST:
                if name == b"connection":
                    connection = value
                elif name == b"host":
                    host = value
                elif name == b"transfer-encoding":
                    chunked = True
                continue
            if name.startswith(_DROP_REQUEST_PREFIXES):
                continue
            if name == b"content-length":
                content_length = value
            out.append((name.decode("latin-1"), value.decode("latin-1")))
        if connection:
            # Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
            listed = {t.strip().lower() for t in connection.decode("latin-1").split(",")}
            listed.discard("content-length")
            out = [(n, v) for n, v in out if n not in listed]
        client = scope.get("client")
        if client:
            out.append(("x-forwarded-for", client[0]))
            # Proves to services that this X-Forwarded-For comes from the gateway
            # (crm_lib.client_ip); a client's own X-Forwarded-* were dropped above.
            proof = forwarded_proof(self.settings.internal_token, client[0])
            if proof is not None:
                out.append((FORWARDED_PROOF, proof))
        out.append(("x-forwarded-proto", scope.get("scheme", "http")))
        if host:
            out.append(("x-forwarded-host", host.decode("latin-1")))
        request_id = request_id_var.get()
        if request_id:
            out.append(("x-request-id", request_id))
        out.extend(inject_headers().items())
        trusted: Any = scope.get(UPSTREAM_HEADERS_KEY)
        if trusted:
            out.extend((n.decode("latin-1"), v.decode("latin-1")) for n, v in trusted)
        return out, content_length, chunked

    def _url(self, service: str, scope: Any) -> URL:
        raw_path: bytes | None = scope.get("raw_path")
        path = (
            raw_path.decode("latin-1")
            if raw_path and raw_path.startswith(b"/")
            else quote(scope["path"])
        )
        query: bytes = scope.get("query_string", b"")
        url = self.pool.urls[service] + path
        if query:
            url += "?" + query.decode("latin-1")
        return URL(url, encoded=True)

    async def _proxy(
        self,
        scope: Any,
        receive: Receive,
        send: Send,
        route: Route,
        session: aiohttp.ClientSession,
        breaker: CircuitBreaker,
    ) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        service = route.service
        headers, content_length, chunked = self._upstream_headers(scope)

        body: _RequestBody | None = None
        max_body = self.settings.body_limit(path)
        if content_length is not None:
            if not content_length.isdigit():
                breaker.abandon()
                await send_problem(send, 400, "Invalid Content-Length", instance=path)
                return
            if int(content_length) > max_body:
                breaker.abandon()
                PROXY_ERRORS.labels(service, "too_large").inc()
                await send_problem(
                    send,
                    413,
                    f"Request body exceeds {max_body} bytes",
                    instance=path,
                    extra_headers=[(b"connection", b"close")],
                )
                return
            if int(content_length) > 0:
                body = _RequestBody(receive, max_body)
        elif chunked:
            body = _RequestBody(receive, max_body)

        url = self._url(service, scope)
        retry = method in _IDEMPOTENT and body is None
        resp: aiohttp.ClientResponse | None = None
        for attempt in (0, 1):
            try:
                resp = await session.request(
                    method,
                    url,
                    headers=headers,
                    data=body.chunks() if body is not None else None,
                    timeout=route.timeout,
                    allow_redirects=False,
                )
                break
            except Exception as exc:
                if body is not None and body.too_large:
                    breaker.abandon()
                    PROXY_ERRORS.labels(service, "too_large").inc()
                    await send_problem(
                        send,
                        413,
                        f"Request body exceeds {max_body} bytes",
                        instance=path,
                        extra_headers=[(b"connection", b"close")],
                    )
                    return
                if body is not None and body.disconnected:
                    breaker.abandon()
                    PROXY_ERRORS.labels(service, "client_disconnect").inc()
                    return
                if isinstance(exc, TimeoutError):
                    breaker.failure()
                    PROXY_ERRORS.labels(service, "timeout").inc()
                    log.warning("gateway.upstream_timeout", upstream=service, path=path)
                    await send_problem(
                        send,
                        504,
                        f"The {service} service did not answer in time",
                        instance=path,
                    )
                    return
                if retry and attempt == 0 and isinstance(exc, _RETRYABLE):
                    continue
                if not isinstance(exc, aiohttp.ClientError):
                    raise
                breaker.failure()
                PROXY_ERRORS.labels(service, "unavailable").inc()
                log.warning(
                    "gateway.upstream_unavailable",
                    upstream=service,
                    path=path,
                    error=describe_error(exc),
                )
                await send_problem(
                    send, 502, f"The {service} service is unavailable", instance=path
                )
                return
        assert resp is not None
        if resp.status in _UNAVAILABLE_STATUSES:
            breaker.failure()
        else:
            breaker.success()
        try:
            await self._relay(scope, receive, send, resp, service, method, started, body)
        finally:
            resp.release()

    async def _relay(
        self,
        scope: Any,
        receive: Receive,
        send: Send,
        resp: aiohttp.ClientResponse,
        service: str,
        method: str,
        started: float,
        body: _RequestBody | None,
    ) -> None:
        out: list[tuple[bytes, bytes]] = []
        connection: bytes | None = None
        for raw_name, value in resp.raw_headers:
            name = raw_name.lower()
            if name in _DROP_RESPONSE or name.startswith(_DROP_RESPONSE_PREFIXES):
                if name == b"connection":
                    connection = value
                continue
            out.append((name, value))
        if connection:
            listed = {t.strip().lower().encode() for t in connection.decode("latin-1").split(",")}
            listed.discard(b"content-length")
            out = [(n, v) for n, v in out if n not in listed]
        status = resp.status
        await send({"type": "http.response.start", "status": status, "headers": out})
        PROXY_DURATION.labels(service).observe(time.perf_counter() - started)
        PROXY_REQUESTS.labels(
            service, method if method in _KNOWN_METHODS else "OTHER", str(status)
        ).inc()

        content = resp.content
        watcher: asyncio.Task[None] | None = None
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                if content.at_eof():
                    await send({"type": "http.response.body", "body": chunk, "more_body": False})
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if watcher is None:
                    # A real stream: notice a client that goes away instead of reading the
                    # whole upstream body into the void (uvicorn's send() then just returns).
                    # Only when the request body is fully read, so nobody else uses receive.
                    if body is None or body.finished:
                        watcher = asyncio.ensure_future(_wait_disconnect(receive))
                elif watcher.done():
                    PROXY_ERRORS.labels(service, "client_disconnect").inc()
                    resp.close()
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Too late for a problem document: return without completing the response,
            # so the server cuts the connection and the client sees a truncated body
            # rather than a complete-looking one.
            PROXY_ERRORS.labels(service, "aborted").inc()
            log.warning(
                "gateway.upstream_aborted",
                upstream=service,
                path=scope["path"],
                error=describe_error(exc),
            )
            resp.close()
        finally:
            if watcher is not None:
                watcher.cancel()
