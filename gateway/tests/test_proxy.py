"""The gateway against real upstreams: small Litestar apps under uvicorn, in-process."""

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio
from litestar import Litestar, Request, Response, get, post, route
from litestar.enums import HttpMethod
from litestar.response import Stream
from prometheus_client import REGISTRY

from crm_dev.devstack import free_port
from crm_dev.testing import RunningServer as Running
from crm_dev.testing import serve_app as serve
from crm_gateway.app import GatewayApp, create_app
from crm_gateway.openapi import merge_documents
from crm_gateway.proxy import UPSTREAM_HEADERS_KEY, ProxyApp
from crm_gateway.routing import API_ROUTES, RouteTable
from crm_gateway.settings import GatewaySettings
from crm_gateway.upstreams import UpstreamPool
from crm_lib.http import create_app as create_service_app

MiB = 1024 * 1024
LIMIT = 6 * MiB
PATTERN = bytes(range(256)) * 256  # 64 KiB

ContactsItem = msgspec.defstruct("Item", [("name", str)])
SalesItem = msgspec.defstruct("Item", [("amount", int), ("currency", str)])

DOWNLOAD_GATE = asyncio.Event()
UPLOAD_SEEN = asyncio.Event()


# -- upstream test services ------------------------------------------------------------


def upstream_app(service: str, extra: list[Any]) -> Litestar:
    @route(
        ["/api/v1/{rest:path}", "/.well-known/{rest:path}"],
        http_method=[HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.DELETE],
        status_code=200,
        include_in_schema=False,
    )
    async def echo(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await request.body()
        return {
            "service": service,
            "method": request.method,
            "path": request.scope["path"],
            "raw_path": request.scope["raw_path"].decode("latin-1"),
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]
            ],
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }

    @get("/internal/not-public")
    async def internal() -> dict[str, str]:
        return {"internal": "yes"}

    return create_service_app(
        service=f"test-{service}", route_handlers=[echo, internal, *extra], readiness={}
    )


@get("/api/v1/contacts/stream", include_in_schema=False)
async def contacts_stream(size: int, gated: bool = False) -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            chunk = PATTERN[: min(len(PATTERN), size - sent)]
            yield chunk
            sent += len(chunk)
            if gated and sent == len(chunk):
                await asyncio.wait_for(DOWNLOAD_GATE.wait(), 10)

    return Stream(chunks(), media_type="application/octet-stream")


@post(
    ["/api/v1/contacts/upload", "/api/v1/imports/upload"], status_code=200, include_in_schema=False
)
async def contacts_upload(request: Request[Any, Any, Any]) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        if chunk:
            digest.update(chunk)
            size += len(chunk)
            UPLOAD_SEEN.set()
    return {"body_len": size, "body_sha256": digest.hexdigest()}


@get("/api/v1/contacts/hop", include_in_schema=False)
async def contacts_hop() -> Response[dict[str, str]]:
    return Response(
        {"ok": "yes"},
        headers={
            "Connection": "x-hop-secret",
            "X-Hop-Secret": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": "Basic",
            "X-Upstream-Kept": "yes",
            "Set-Cookie": "sid=secret; Path=/",
        },
    )


@post("/api/v1/contacts/items")
async def contacts_items(data: ContactsItem) -> ContactsItem:  # type: ignore[valid-type]
    return data


@post("/api/v1/deals/items")
async def deals_items(data: SalesItem) -> SalesItem:  # type: ignore[valid-type]
    return data


@get("/api/v1/reports/slow", include_in_schema=False)
async def reports_slow() -> dict[str, str]:
    await asyncio.sleep(1.5)
    return {"slow": "done"}


@get("/.well-known/jwks.json", include_in_schema=False)
async def jwks() -> dict[str, Any]:
    return {"keys": [], "service": "identity"}


# -- in-process uvicorn ----------------------------------------------------------------


def tenant_layer(app: Any) -> Any:
    """Stand-in for the later auth layer: trusted identity headers via the scope hook."""

    async def layer(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"].endswith("/whoami"):
            scope[UPSTREAM_HEADERS_KEY] = [(b"x-tenant-id", b"tenant-from-auth")]
        await app(scope, receive, send)

    return layer


class Stack:
    def __init__(self, upstreams: dict[str, Running], gateway: Running, app: GatewayApp) -> None:
        self.upstreams = upstreams
        self.gateway = gateway
        self.app = app
        self.down_url = app.settings.marketing_url


def gateway_settings(urls: dict[str, str], **overrides: Any) -> GatewaySettings:
    return GatewaySettings(
        **{f"{name}_url": url for name, url in urls.items()},
        route_timeouts={"reports": {"read": 0.3}},
        max_body_bytes=LIMIT,
        route_max_body_bytes={"imports": 2 * LIMIT},
        ready_timeout_seconds=0.5,
        ready_cache_seconds=0.0,
        openapi_cache_seconds=0.0,
        openapi_partial_cache_seconds=0.0,
        **{"metrics_port": 0, **overrides},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack() -> AsyncIterator[Stack]:
    upstreams = {
        "identity": await serve(upstream_app("identity", [jwks])),
        "contacts": await serve(
            upstream_app(
                "contacts", [contacts_stream, contacts_upload, contacts_hop, contacts_items]
            )
        ),
        "sales": await serve(upstream_app("sales", [reports_slow, deals_items])),
        "support": await serve(upstream_app("support", [])),
    }
    urls = {name: r.url for name, r in upstreams.items()}
    urls["marketing"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = create_app(gateway_settings(urls), proxy_middleware=[tenant_layer])
    gateway = await serve(app)
    try:
        yield Stack(upstreams, gateway, app)
    finally:
        await gateway.stop()
        for running in upstreams.values():
            await running.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=15) as c:
        yield c


def header_values(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k == name]


async def raw_exchange(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes on a raw connection; return the status and the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        if body:
            writer.write(body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return int(data.split(b" ", 2)[1]), data


# -- routing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/contacts/abc", "contacts"),
        ("/api/v1/companies", "contacts"),
        ("/api/v1/deals/1", "sales"),
        ("/api/v1/tickets/1", "support"),
        ("/api/v1/auth/login", "identity"),
        ("/api/v1/sla-policies", "support"),
    ],
)
async def test_routes_to_owning_service(client: httpx.AsyncClient, path: str, service: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    assert r.json()["service"] == service
    assert r.json()["path"] == path


async def test_well_known_jwks_goes_to_identity(client: httpx.AsyncClient) -> None:
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.json() == {"keys": [], "service": "identity"}


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/nope/1", "/api/v1/", "/.well-known/nothing"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["status"] == 404
        assert problem["request_id"] == r.headers["x-request-id"]
        assert {"type", "title", "detail"} <= problem.keys()


async def test_dot_segments_rejected(stack: Stack) -> None:
    status, _ = await raw_exchange(
        stack.gateway.port,
        b"GET /api/v1/contacts/../../health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert status == 400


async def test_path_and_query_forwarded_verbatim(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/contacts/a%2Fb?limit=5&cursor=x%2By&cursor=z")
    echo = r.json()
    assert echo["raw_path"] == "/api/v1/contacts/a%2Fb"
    assert echo["query"] == "limit=5&cursor=x%2By&cursor=z"


def test_route_table_covers_every_service() -> None:
    assert set(API_ROUTES.values()) == {"identity", "contacts", "sales", "marketing", "support"}
    table = RouteTable(GatewaySettings(route_timeouts={"sales": {"read": 5}, "deals": {"read": 1}}))
    deals = table.resolve("/api/v1/deals/x")
    quotes = table.resolve("/api/v1/quotes")
    assert deals is not None and deals.timeout.sock_read == 1
    assert quotes is not None and quotes.timeout.sock_read == 5
    assert table.resolve("/api/v2/deals") is None


# -- headers ---------------------------------------------------------------------------


async def test_spoofed_and_hop_by_hop_headers_not_forwarded(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/api/v1/contacts/h",
        headers={
            "X-Tenant-ID": "evil-tenant",
            "X-User-ID": "evil-user",
            "X-User-Roles": "owner",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=6.6.6.6",
            "X-Real-IP": "6.6.6.6",
            "Connection": "keep-alive, x-custom-hop",
            "X-Custom-Hop": "1",
            "Keep-Alive": "timeout=100",
            "TE": "trailers",
            "Proxy-Authorization": "Basic abc",
            "X-Kept": "kept",
        },
    )
    echo = r.json()
    names = {k for k, _ in echo["headers"]}
    for dropped in (
        "x-tenant-id",
        "x-user-id",
        "x-user-roles",
        "forwarded",
        "x-real-ip",
        "x-custom-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
    ):
        assert dropped not in names, dropped
    assert header_values(echo, "x-forwarded-for") == ["127.0.0.1"]
    assert header_values(echo, "x-forwarded-proto") == ["http"]
    assert header_values(echo, "x-kept") == ["kept"]
    assert header_values(echo, "x-forwarded-host") == [client.base_url.netloc.decode()]


async def test_trusted_headers_hook_is_the_only_identity_source(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/api/v1/contacts/whoami", headers={"X-Tenant-ID": "evil"})
    assert header_values(r.json(), "x-tenant-id") == ["tenant-from-auth"]


async def test_host_is_the_upstream_and_original_goes_to_forwarded_host(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.url) as c:
        r = await c.get("/api/v1/contacts/x", headers={"Host": "crm.example.com"})
    echo = r.json()
    assert header_values(echo, "host") == [f"127.0.0.1:{stack.upstreams['contacts'].port}"]
    assert header_values(echo, "x-forwarded-host") == ["crm.example.com"]


async def test_no_headers_invented_by_the_client_library(stack: Stack) -> None:
    """aiohttp must not add Accept-Encoding/User-Agent/Accept the client did not send."""
    status, data = await raw_exchange(
        stack.gateway.port,
        b"GET /api/v1/contacts/bare HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert status == 200
    echo = msgspec.json.decode(data.split(b"\r\n\r\n", 1)[1])
    names = {k for k, _ in echo["headers"]}
    assert not names & {"accept-encoding", "user-agent", "accept", "content-type", "cookie"}


async def test_response_hop_by_hop_stripped_and_cookies_not_shared(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    r = await client.get("/api/v1/contacts/hop")
    assert r.status_code == 200
    for dropped in ("x-hop-secret", "keep-alive", "proxy-authenticate"):
        assert dropped not in r.headers, dropped
    assert r.headers["x-upstream-kept"] == "yes"
    assert r.headers["set-cookie"].startswith("sid=secret")
    for single in ("x-request-id", "date", "server"):
        assert len(r.headers.get_list(single)) <= 1, single
    # the gateway's upstream session keeps no cookie jar: the next caller sends none
    async with httpx.AsyncClient(base_url=stack.gateway.url) as fresh:
        echo = (await fresh.get("/api/v1/contacts/after-cookie")).json()
    assert header_values(echo, "cookie") == []


async def test_request_id_echoed_when_valid(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/contacts/rid", headers={"X-Request-ID": "abc-123.x"})
    assert r.headers.get_list("x-request-id") == ["abc-123.x"]
    assert header_values(r.json(), "x-request-id") == ["abc-123.x"]


async def test_request_id_generated_when_invalid(client: httpx.AsyncClient) -> None:
    for sent in ({"X-Request-ID": "bad id <script>"}, {}):
        r = await client.get("/api/v1/deals/rid", headers=sent)
        rid = r.headers.get_list("x-request-id")
        assert len(rid) == 1
        uuid.UUID(rid[0])
        assert header_values(r.json(), "x-request-id") == rid


async def test_traceparent_forwarded(client: httpx.AsyncClient) -> None:
    trace_id = uuid.uuid4().hex
    r = await client.get(
        "/api/v1/tickets/1", headers={"traceparent": f"00-{trace_id}-{'1' * 16}-01"}
    )
    forwarded = header_values(r.json(), "traceparent")
    assert len(forwarded) == 1
    version, tid, span_id, _flags = forwarded[0].split("-")
    assert (version, tid) == ("00", trace_id)
    assert len(span_id) == 16


def test_header_filter_unit() -> None:
    settings = GatewaySettings()
    proxy = ProxyApp(settings, RouteTable(settings), UpstreamPool(settings))
    scope: Any = {
        "type": "http",
        "scheme": "https",
        "client": ("10.0.0.7", 5555),
        "headers": [
            (b"host", b"api.crm.example"),
            (b"upgrade", b"websocket"),
            (b"connection", b"upgrade"),
            (b"proxy-connection", b"keep-alive"),
            (b"trailer", b"x-sum"),
            (b"transfer-encoding", b"chunked"),
            (b"x-tenant-slug", b"evil"),
            (b"x-forwarded-proto", b"http"),
            (b"authorization", b"Bearer t"),
            (b"content-length", b"10"),
        ],
        UPSTREAM_HEADERS_KEY: [(b"x-user-id", b"u-1")],
    }
    headers, content_length, chunked = proxy._upstream_headers(scope)
    assert dict(headers) == {
        "authorization": "Bearer t",
        "content-length": "10",
        "x-forwarded-for": "10.0.0.7",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "api.crm.example",
        "x-user-id": "u-1",
    }
    assert content_length == b"10" and chunked


# -- bodies ----------------------------------------------------------------------------


async def test_large_upload_with_content_length(client: httpx.AsyncClient) -> None:
    body = PATTERN * 80  # 5 MiB
    r = await client.post("/api/v1/contacts/upload", content=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}


async def test_route_body_limit_lets_imports_upload_more(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    body = PATTERN * (LIMIT // len(PATTERN) + 16)  # 1 MiB over the general limit
    r = await client.post("/api/v1/imports/upload", content=body)
    assert r.status_code == 200, r.text
    assert r.json()["body_len"] == len(body)
    for path, size, expected in (
        ("/api/v1/contacts/upload", len(body), 413),
        ("/api/v1/imports/upload", 2 * LIMIT + 1, 413),
    ):
        status, _ = await raw_exchange(
            stack.gateway.port,
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode(),
        )
        assert status == expected, path


async def test_upload_is_streamed_not_buffered(client: httpx.AsyncClient) -> None:
    UPLOAD_SEEN.clear()
    digest = hashlib.sha256()

    async def chunks() -> AsyncIterator[bytes]:
        digest.update(PATTERN)
        yield PATTERN
        # the upstream has the first chunk before the client sent the rest
        await asyncio.wait_for(UPLOAD_SEEN.wait(), 5)
        for _ in range(79):
            digest.update(PATTERN)
            yield PATTERN

    r = await client.post("/api/v1/contacts/upload", content=chunks())
    assert r.status_code == 200, r.text
    assert r.json() == {"body_len": 80 * len(PATTERN), "body_sha256": digest.hexdigest()}


async def test_download_is_streamed_not_buffered(client: httpx.AsyncClient) -> None:
    DOWNLOAD_GATE.clear()
    size = 5 * MiB
    digest = hashlib.sha256()
    received = 0
    async with client.stream("GET", f"/api/v1/contacts/stream?size={size}&gated=true") as r:
        assert r.status_code == 200
        chunks = r.aiter_raw()
        # the first bytes arrive while the upstream is still blocked on the gate
        first = await asyncio.wait_for(chunks.__anext__(), 5)
        DOWNLOAD_GATE.set()
        digest.update(first)
        received += len(first)
        async for chunk in chunks:
            digest.update(chunk)
            received += len(chunk)
    expected = hashlib.sha256((PATTERN * 80)[:size]).hexdigest()
    assert (received, digest.hexdigest()) == (size, expected)


async def test_client_disconnect_mid_download_stops_the_relay(
    client: httpx.AsyncClient,
) -> None:
    sample = {"service": "contacts", "kind": "client_disconnect"}
    before = REGISTRY.get_sample_value("crm_gateway_proxy_errors_total", sample) or 0.0
    DOWNLOAD_GATE.clear()
    async with client.stream("GET", f"/api/v1/contacts/stream?size={50 * MiB}&gated=true") as r:
        await asyncio.wait_for(r.aiter_raw().__anext__(), 5)
    DOWNLOAD_GATE.set()  # upstream goes on producing; the gateway must notice and stop
    for _ in range(100):
        after = REGISTRY.get_sample_value("crm_gateway_proxy_errors_total", sample) or 0.0
        if after > before:
            break
        await asyncio.sleep(0.05)
    assert after == before + 1
    assert (await client.get("/api/v1/contacts/after")).status_code == 200


async def test_413_by_content_length(stack: Stack) -> None:
    status, data = await raw_exchange(
        stack.gateway.port,
        b"POST /api/v1/contacts/upload HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Length: {LIMIT + 1}\r\n\r\n".encode(),
    )
    assert status == 413
    assert b"application/problem+json" in data
    assert b"x-request-id" in data.lower()


async def test_413_while_streaming(stack: Stack) -> None:
    chunk = PATTERN
    chunks = []
    total = 0
    while total <= LIMIT:
        chunks.append(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        total += len(chunk)
    status, data = await raw_exchange(
        stack.gateway.port,
        b"POST /api/v1/contacts/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"".join(chunks),
    )
    assert status == 413
    assert b"application/problem+json" in data


# -- failures --------------------------------------------------------------------------


async def test_504_on_slow_upstream(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/reports/slow")
    assert r.status_code == 504
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 504
    # other sales routes keep the default timeout
    assert (await client.get("/api/v1/deals/1")).status_code == 200


async def test_502_when_upstream_down_others_still_work(client: httpx.AsyncClient) -> None:
    for method in ("GET", "POST"):
        r = await client.request(method, "/api/v1/campaigns/1", content=b"{}")
        assert r.status_code == 502
        assert r.headers["content-type"] == "application/problem+json"
        assert "marketing" in r.json()["detail"]
        assert len(r.headers.get_list("x-request-id")) == 1
    assert (await client.get("/api/v1/contacts/1")).json()["service"] == "contacts"


# -- gateway endpoints -----------------------------------------------------------------


async def test_health(client: httpx.AsyncClient, stack: Stack) -> None:
    assert (await client.get("/health/live")).status_code == 200
    r = await client.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["marketing"] is False
    assert r.json()["checks"]["contacts"] is True

    urls = {name: run.url for name, run in stack.upstreams.items()}
    urls["marketing"] = urls["support"]
    healthy = await serve(create_app(gateway_settings(urls)))
    try:
        async with httpx.AsyncClient(base_url=healthy.url) as c:
            r = await c.get("/health/ready")
        assert r.status_code == 200, r.text
        assert all(r.json()["checks"].values())
    finally:
        await healthy.stop()


async def test_metrics_only_on_the_metrics_port(stack: Stack, client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/contacts/m")
    # The public port does not serve metrics (nor route to a service's own /metrics).
    for path in ["/metrics", "/metrics/", "/api/v1/metrics", "/api/v1/contacts/../../metrics"]:
        public = await client.get(path)
        assert public.status_code in (400, 404), (path, public.status_code)
        assert public.headers["content-type"].startswith("application/problem+json")
        assert "crm_gateway_proxy_requests_total" not in public.text
    metrics = stack.app.metrics
    assert metrics is not None and metrics.port not in (None, stack.gateway.port)
    assert metrics.url is not None
    async with httpx.AsyncClient() as c:
        r = await c.get(metrics.url)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "crm_gateway_proxy_requests_total" in r.text
    assert 'service="contacts"' in r.text
    # The Litestar metrics of the gateway's own endpoints are there too.
    assert "crm_requests_total" in r.text


async def test_metrics_port_taken_or_disabled_keeps_the_gateway_serving(stack: Stack) -> None:
    urls = {name: r.url for name, r in stack.upstreams.items()}
    urls["marketing"] = stack.down_url
    taken = stack.app.metrics.port if stack.app.metrics else None
    assert taken
    for port in (taken, None):
        app = create_app(gateway_settings(urls, metrics_port=port), proxy_middleware=[])
        running = await serve(app)
        try:
            async with httpx.AsyncClient(base_url=running.url) as c:
                assert (await c.get("/health/live")).status_code == 200
                assert (await c.get("/api/v1/contacts/x")).status_code == 200
                assert (await c.get("/metrics")).status_code == 404
            assert app.metrics is None or app.metrics.port is None
        finally:
            await running.stop()


async def test_merged_openapi(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["x-missing-services"] == ["marketing"]
    paths = doc["paths"]
    assert "/api/v1/contacts/items" in paths and "/api/v1/deals/items" in paths
    assert all(p.startswith("/api/v1/") for p in paths)
    assert paths["/api/v1/deals/items"]["x-service"] == "sales"
    schemas = doc["components"]["schemas"]
    # both services define a different "Item": each gets its service prefix
    assert "Item" not in schemas
    assert set(schemas["ContactsItem"]["properties"]) == {"name"}
    assert set(schemas["SalesItem"]["properties"]) == {"amount", "currency"}
    assert (
        "#/components/schemas/SalesItem"
        in msgspec.json.encode(paths["/api/v1/deals/items"]).decode()
    )


def test_merge_keeps_identical_components_unprefixed() -> None:
    shared = {"type": "object", "properties": {"x": {"type": "string"}}}
    doc = {
        "paths": {"/api/v1/a": {"get": {"operationId": "List"}}, "/other": {}},
        "components": {"schemas": {"Shared": shared}},
    }
    other = {
        "paths": {"/api/v1/b": {"get": {"operationId": "List"}}},
        "components": {"schemas": {"Shared": shared}},
    }
    merged = merge_documents({"contacts": doc, "sales": other}, [])
    assert merged["components"]["schemas"] == {"Shared": shared}
    assert set(merged["paths"]) == {"/api/v1/a", "/api/v1/b"}
    assert merged["paths"]["/api/v1/b"]["get"]["operationId"] == "SalesList"
    assert "x-missing-services" not in merged
