"""The gateway's default layers against real Redis, a stub identity and echo upstreams.

Everything runs in-process over real sockets: the gateway under uvicorn with its default
layers (CORS, authentication + tenant access + rate limits, idempotency, circuit
breakers), an identity stub written here (JWKS from a test key, the internal API-key and
tenant-access endpoints with answers the tests control), echo upstreams, and a Redis
server of this module's own (it is stopped and restarted by the fail-open test).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey
from litestar import Litestar, Request, Response, get, post, route
from litestar.enums import HttpMethod

from crm_dev.devstack import EmbeddedRedis, free_port
from crm_dev.testing import InProcessServer, RunningServer, serve_app
from crm_gateway.app import GatewayApp, create_app
from crm_gateway.layers import GatewayLayers
from crm_gateway.settings import GatewaySettings
from crm_lib.http import create_app as create_service_app

INTERNAL_TOKEN = "test-internal-token"
KEY = ECKey.generate_key("P-256", parameters={"kid": "gw-1", "use": "sig", "alg": "ES256"})
OTHER_KEY = ECKey.generate_key("P-256", parameters={"kid": "gw-1"})

SLOW_GATE = asyncio.Event()
SLOW_STARTED = asyncio.Event()


def mint(
    tenant: uuid.UUID,
    *,
    sub: str | None = None,
    kind: str = "user",
    roles: list[str] | None = None,
    scope: str | None = None,
    ttl: int = 900,
    key: ECKey = KEY,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "crm-identity",
        "aud": "crm-api",
        "sub": sub or f"user:{uuid.uuid4()}",
        "kind": kind,
        "tid": str(tenant),
        "roles": roles if roles is not None else ["sales_rep"],
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    if scope is not None:
        claims["scope"] = scope
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}, claims, key)


# -- identity stub --------------------------------------------------------------------------


class StubIdentity:
    """JWKS, API-key resolution and tenant access with answers the tests control."""

    def __init__(self) -> None:
        self.tenants: dict[str, dict[str, Any]] = {}
        self.api_keys: dict[str, dict[str, Any]] = {}
        self.resolve_calls: list[str] = []
        self.access_calls: list[str] = []

        def authorized(request: Request[Any, Any, Any]) -> bool:
            return request.headers.get("authorization") == f"Bearer {INTERNAL_TOKEN}"

        @get("/.well-known/jwks.json", sync_to_thread=False)
        def jwks() -> dict[str, Any]:
            return {"keys": [KEY.as_dict(private=False)]}

        @post("/internal/v1/api-keys/resolve", sync_to_thread=False)
        def resolve(request: Request[Any, Any, Any], data: dict[str, str]) -> Response[Any]:
            if not authorized(request):
                return Response({"status": 401}, status_code=401)
            self.resolve_calls.append(data["key"])
            entry = self.api_keys.get(data["key"])
            if entry is None:
                return Response({"status": 401, "detail": "unknown key"}, status_code=401)
            token = mint(
                entry["tenant_id"],
                sub=f"api_key:{entry['key_id']}",
                kind="api_key",
                roles=[],
                scope=" ".join(entry["scopes"]),
                ttl=entry["expires_in"],
            )
            return Response(
                {
                    "tenant_id": str(entry["tenant_id"]),
                    "key_id": str(entry["key_id"]),
                    "scopes": entry["scopes"],
                    "access_token": token,
                    "expires_in": entry["expires_in"],
                },
                status_code=200,
            )

        @get("/internal/v1/tenants/{tenant_id:str}/access", sync_to_thread=False)
        def access(request: Request[Any, Any, Any], tenant_id: str) -> Response[Any]:
            if not authorized(request):
                return Response({"status": 401}, status_code=401)
            self.access_calls.append(tenant_id)
            answer = self.tenants.get(tenant_id)
            if answer is None:
                return Response({"status": 404}, status_code=404)
            if answer.get("_fail"):
                return Response({"status": 500}, status_code=500)
            return Response(answer, status_code=200)

        self.app = create_service_app(
            service="stub-identity",
            route_handlers=[jwks, resolve, access, echo_handler("identity")],
            readiness={},
        )


def echo_handler(service: str) -> Any:
    @route(
        ["/api/v1/{rest:path}", "/.well-known/{rest:path}"],
        http_method=[
            HttpMethod.GET,
            HttpMethod.HEAD,
            HttpMethod.POST,
            HttpMethod.PATCH,
            HttpMethod.DELETE,
        ],
        status_code=200,
        include_in_schema=False,
    )
    async def echo(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await request.body()
        return {
            "service": service,
            "method": request.method,
            "path": request.scope["path"],
            "headers": [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]
            ],
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }

    return echo


class Counters:
    created = 0
    flaky = 0
    secrets = 0


@post("/api/v1/contacts/create", status_code=201, include_in_schema=False)
async def contacts_create(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    Counters.created += 1
    body = await request.body()
    return Response(
        {"n": Counters.created, "body": body.decode()},
        status_code=201,
        headers={"Location": f"/api/v1/contacts/{Counters.created}", "X-Not-Stored": "1"},
    )


@post("/api/v1/contacts/slow", status_code=201, include_in_schema=False)
async def contacts_slow() -> dict[str, str]:
    SLOW_STARTED.set()
    await asyncio.wait_for(SLOW_GATE.wait(), 10)
    return {"slow": "done"}


@post("/api/v1/contacts/flaky", include_in_schema=False)
async def contacts_flaky() -> Response[dict[str, int]]:
    Counters.flaky += 1
    return Response({"n": Counters.flaky}, status_code=500 if Counters.flaky == 1 else 201)


@post("/api/v1/contacts/secret", status_code=201, include_in_schema=False)
async def contacts_secret() -> Response[dict[str, Any]]:
    """Like a new API key: a secret shown once, marked no-store (as identity marks it)."""
    Counters.secrets += 1
    return Response(
        {"key": f"crm_live_shown-once-{uuid.uuid4().hex}"},
        status_code=201,
        headers={"Cache-Control": "private, no-store"},
    )


@get("/api/v1/contacts/ratelimited-upstream", include_in_schema=False, sync_to_thread=False)
def contacts_upstream_headers() -> Response[dict[str, str]]:
    return Response({"ok": "yes"}, headers={"X-RateLimit-Limit": "999999"})


def upstream(service: str, extra: list[Any] | None = None) -> Litestar:
    return create_service_app(
        service=f"test-{service}",
        route_handlers=[echo_handler(service), *(extra or [])],
        readiness={},
    )


async def serve_on(app: Any, port: int) -> RunningServer:
    """Like ``serve_app`` but on a chosen port (an upstream coming back)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, proxy_headers=False
    )
    server = InProcessServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return RunningServer(server, task, port)


# -- the stack ------------------------------------------------------------------------------


class Stack:
    def __init__(
        self,
        identity: StubIdentity,
        upstreams: dict[str, RunningServer],
        urls: dict[str, str],
        redis_server: EmbeddedRedis,
    ) -> None:
        self.identity = identity
        self.upstreams = upstreams
        self.urls = urls
        self.redis_server = redis_server
        self.app: GatewayApp
        self.gateway: RunningServer
        self.redis = aioredis.Redis.from_url(redis_server.url)

    @property
    def layers(self) -> GatewayLayers:
        assert self.app.layers is not None
        return self.app.layers

    def settings(self, **overrides: Any) -> GatewaySettings:
        values: dict[str, Any] = {
            **{f"{name}_url": url for name, url in self.urls.items()},
            "redis_url": self.redis_server.url,
            "internal_token": INTERNAL_TOKEN,
            "log_level": "WARNING",
            "tenant_access_cache_seconds": 1.0,
            "anonymous_requests_per_minute": 10_000,
            "circuit_failure_threshold": 3,
            "circuit_cooldown_seconds": 1.0,
            "redis_retry_seconds": 0.3,
            "ready_cache_seconds": 0.0,
            "cors_allow_origins": ["https://app.crm.example"],
        }
        values.update(overrides)
        return GatewaySettings(**values)

    def tenant(
        self, status: str = "active", rpm: int = 10_000, tenant_rpm: int = 100_000
    ) -> uuid.UUID:
        tid = uuid.uuid4()
        self.identity.tenants[str(tid)] = {
            "tenant_id": str(tid),
            "status": status,
            "plan": "pro",
            "limits": {"requests_per_minute": rpm, "tenant_requests_per_minute": tenant_rpm},
        }
        return tid

    def api_key(self, tenant: uuid.UUID, scopes: list[str], expires_in: int = 900) -> str:
        key = f"crm_test_{uuid.uuid4().hex}_{uuid.uuid4().hex[:6]}"
        self.identity.api_keys[key] = {
            "tenant_id": tenant,
            "key_id": uuid.uuid4(),
            "scopes": scopes,
            "expires_in": expires_in,
        }
        return key


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    path: Path = tmp_path_factory.mktemp("gateway-redis")
    with EmbeddedRedis(path) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(own_redis: EmbeddedRedis) -> AsyncIterator[Stack]:
    identity = StubIdentity()
    upstreams = {
        "identity": await serve_app(identity.app),
        "contacts": await serve_app(
            upstream(
                "contacts",
                [
                    contacts_create,
                    contacts_slow,
                    contacts_flaky,
                    contacts_secret,
                    contacts_upstream_headers,
                ],
            )
        ),
        "sales": await serve_app(upstream("sales")),
        "support": await serve_app(upstream("support")),
    }
    urls = {name: r.url for name, r in upstreams.items()}
    urls["marketing"] = f"http://127.0.0.1:{free_port()}"  # down until a test starts it
    s = Stack(identity, upstreams, urls, own_redis)
    s.app = create_app(s.settings())
    s.gateway = await serve_app(s.app)
    try:
        yield s
    finally:
        await s.gateway.stop()
        for running in s.upstreams.values():
            await running.stop()
        await s.redis.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=15) as c:
        yield c


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def upstream_headers(response: httpx.Response, name: str) -> list[str]:
    return [v for k, v in response.json()["headers"] if k == name]


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = r.json()
    assert doc["status"] == status
    return doc


def assert_rate_headers(r: httpx.Response) -> None:
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        values = r.headers.get_list(name)
        assert len(values) == 1, (name, r.status_code, r.headers)
        assert values[0].isdigit()


# -- authentication ---------------------------------------------------------------------------


async def test_missing_and_malformed_credentials_are_401(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/contacts/1")
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_rate_headers(r)
    assert r.headers["x-request-id"]
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt", "Bearer crm_live_x!"):
        r = await client.get("/api/v1/contacts/1", headers={"Authorization": header})
        assert_problem(r, 401)
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_forged_expired_and_foreign_tokens_are_401(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    tenant = stack.tenant()
    for token in (
        mint(tenant, key=OTHER_KEY),  # same kid, other key
        mint(tenant, ttl=-120),  # expired
    ):
        r = await client.get("/api/v1/contacts/1", headers=auth(token))
        assert_problem(r, 401)
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert_rate_headers(r)
    # a valid signature for a tenant identity does not know
    r = await client.get("/api/v1/contacts/1", headers=auth(mint(uuid.uuid4())))
    assert_problem(r, 401)


async def test_valid_token_reaches_upstream_with_trusted_headers_only(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    tenant = stack.tenant()
    subject = f"user:{uuid.uuid4()}"
    token = mint(tenant, sub=subject)
    r = await client.post(
        "/api/v1/deals/1",
        headers=auth(
            token,
            **{
                "X-Tenant-ID": str(uuid.uuid4()),
                "X-Principal": "user:evil",
                "X-User-ID": "evil",
            },
        ),
        content=b"{}",
    )
    assert r.status_code == 200, r.text
    assert r.json()["service"] == "sales"
    assert upstream_headers(r, "x-tenant-id") == [str(tenant)]
    assert upstream_headers(r, "x-principal") == [subject]
    assert upstream_headers(r, "x-user-id") == []
    assert upstream_headers(r, "authorization") == [f"Bearer {token}"]
    assert_rate_headers(r)


async def test_spoofed_tenant_header_never_reaches_upstream_on_anonymous_routes(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(
        "/api/v1/auth/login",
        headers={"X-Tenant-ID": str(uuid.uuid4()), "X-Principal": "user:evil"},
        content=b'{"email": "a@b.c"}',
    )
    assert r.status_code == 200, r.text
    assert upstream_headers(r, "x-tenant-id") == []
    assert upstream_headers(r, "x-principal") == []


async def test_forwarded_for_reaches_services_only_with_the_gateway_proof(
    client: httpx.AsyncClient,
) -> None:
    """Issue 10: services trust X-Forwarded-For only with the gateway's HMAC proof."""
    from crm_lib.client_ip import client_address, forwarded_proof

    forged = forwarded_proof(INTERNAL_TOKEN, "203.0.113.9")
    assert forged is not None
    r = await client.post(
        "/api/v1/auth/login",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proof": forged},
        content=b"{}",
    )
    assert r.status_code == 200, r.text
    # The client's own forwarded-for and proof are dropped; the gateway's say 127.0.0.1.
    assert upstream_headers(r, "x-forwarded-for") == ["127.0.0.1"]
    [proof] = upstream_headers(r, "x-forwarded-proof")
    assert proof != forged
    seen = {"x-forwarded-for": "127.0.0.1", "x-forwarded-proof": proof}
    assert client_address(seen, "10.9.9.9", INTERNAL_TOKEN) == "127.0.0.1"
    assert client_address(seen, "10.9.9.9", "another-secret") == "10.9.9.9"


async def test_revoked_access_token_is_401(client: httpx.AsyncClient, stack: Stack) -> None:
    tenant = stack.tenant()
    token, other = mint(tenant), mint(tenant)
    assert (await client.get("/api/v1/contacts/1", headers=auth(token))).status_code == 200
    principal = await stack.layers.verifier.verify(token)
    # what identity writes on RFC 7009 revocation / logout
    await stack.redis.set(f"crm:t:{tenant}:revoked-jti:{principal.token_id}", "1", ex=60)
    r = await client.get("/api/v1/contacts/1", headers=auth(token))
    assert_problem(r, 401)
    assert "revoked" in r.json()["detail"]
    assert_rate_headers(r)
    assert (await client.get("/api/v1/contacts/1", headers=auth(other))).status_code == 200


async def test_anonymous_routes_need_no_token(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("POST", "/api/v1/signup"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/invitations/accept"),
        ("GET", "/api/v1/plans"),
        ("POST", "/api/v1/billing/stripe/webhook"),
        ("GET", "/.well-known/jwks.json"),
    ]:
        r = await client.request(method, path, content=b"{}" if method == "POST" else None)
        assert r.status_code == 200, (path, r.text)
        assert_rate_headers(r)
    # client credentials reach identity's token endpoint untouched
    r = await client.post(
        "/api/v1/oauth/token", headers={"Authorization": "Basic Y2xpZW50OnNlY3JldA=="}
    )
    assert r.status_code == 200
    assert upstream_headers(r, "authorization") == ["Basic Y2xpZW50OnNlY3JldA=="]
    # but not other methods or neighbouring paths
    assert (await client.get("/api/v1/signup")).status_code == 401
    assert (await client.post("/api/v1/plans")).status_code == 401
    assert (await client.post("/api/v1/auth/logout")).status_code == 401


# -- API keys -------------------------------------------------------------------------------


async def test_api_key_resolved_cached_and_invalidated(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    tenant = stack.tenant()
    key = stack.api_key(tenant, ["contacts:read"])
    calls = len(stack.identity.resolve_calls)
    for _ in range(3):
        r = await client.get("/api/v1/contacts/1", headers=auth(key))
        assert r.status_code == 200, r.text
        assert_rate_headers(r)
    assert len(stack.identity.resolve_calls) == calls + 1  # cached after the first

    # the key never reaches the service: a minted access token does
    forwarded = upstream_headers(r, "authorization")
    assert len(forwarded) == 1 and forwarded[0].startswith("Bearer ey")
    assert key not in str(r.json()["headers"])
    principal = await stack.layers.verifier.verify(forwarded[0].removeprefix("Bearer "))
    assert principal.kind == "api_key" and principal.tenant_id == tenant
    assert principal.scopes == frozenset({"contacts:read"})
    assert upstream_headers(r, "x-principal") == [principal.subject]

    cache_key = f"crm:apikey:{hashlib.sha256(key.encode()).hexdigest()}"
    ttl = await stack.redis.ttl(cache_key)
    assert 0 < ttl <= 60
    assert key.encode() not in (await stack.redis.get(cache_key) or b"")

    # identity revokes: deletes the key and the cache entry -> 401 at once
    del stack.identity.api_keys[key]
    await stack.redis.delete(cache_key)
    r = await client.get("/api/v1/contacts/1", headers=auth(key))
    assert_problem(r, 401)
    assert len(stack.identity.resolve_calls) == calls + 2


async def test_api_key_cache_never_outlives_the_token(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    tenant = stack.tenant()
    key = stack.api_key(tenant, ["*"], expires_in=45)  # 45 s token, 30 s margin -> 15 s
    assert (await client.get("/api/v1/contacts/1", headers=auth(key))).status_code == 200
    ttl = await stack.redis.ttl(f"crm:apikey:{hashlib.sha256(key.encode()).hexdigest()}")
    assert 0 < ttl <= 15


async def test_unknown_api_key_is_401(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/contacts/1", headers=auth("crm_live_nope_abcdef"))
    assert_problem(r, 401)
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


# -- tenant access ----------------------------------------------------------------------------


async def test_suspended_tenant_reads_but_cannot_write(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    tenant = stack.tenant("suspended")
    token = mint(tenant)
    assert (await client.get("/api/v1/contacts/1", headers=auth(token))).status_code == 200
    for method in ("POST", "PATCH", "DELETE"):
        r = await client.request(method, "/api/v1/contacts/1", headers=auth(token))
        doc = assert_problem(r, 403)
        assert doc["type"] == "https://errors.crm.example/tenant-suspended"
        assert_rate_headers(r)


async def test_other_tenant_states(client: httpx.AsyncClient, stack: Stack) -> None:
    for status in ("active", "trialing", "past_due"):
        token = mint(stack.tenant(status))
        r = await client.post("/api/v1/contacts/1", headers=auth(token))
        assert r.status_code == 200, status
    provisioning = mint(stack.tenant("provisioning"))
    r = await client.get("/api/v1/contacts/1", headers=auth(provisioning))
    assert_problem(r, 409)
    assert r.json()["type"] == "https://errors.crm.example/tenant-provisioning"
    # polling the tenant's own status works while it is being set up
    assert (await client.get("/api/v1/tenant", headers=auth(provisioning))).status_code == 200
    for status in ("pending_deletion", "deleted"):
        r = await client.get("/api/v1/contacts/1", headers=auth(mint(stack.tenant(status))))
        assert_problem(r, 403)


async def test_tenant_access_is_cached_briefly(client: httpx.AsyncClient, stack: Stack) -> None:
    tenant = stack.tenant()
    token = mint(tenant)
    for _ in range(5):
        assert (await client.get("/api/v1/contacts/1", headers=auth(token))).status_code == 200
    assert stack.identity.access_calls.count(str(tenant)) == 1
    stack.identity.tenants[str(tenant)]["status"] = "suspended"
    await asyncio.sleep(1.1)  # tenant_access_cache_seconds = 1.0
    r = await client.post("/api/v1/contacts/1", headers=auth(token))
    assert_problem(r, 403)


async def test_identity_unavailable_is_503_but_known_tenants_keep_working(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    known = stack.tenant()
    token = mint(known)
    assert (await client.get("/api/v1/contacts/1", headers=auth(token))).status_code == 200
    stack.identity.tenants[str(known)]["_fail"] = True
    await asyncio.sleep(1.1)  # past tenant_access_cache_seconds: identity is asked again
    r = await client.get("/api/v1/contacts/1", headers=auth(token))
    assert r.status_code == 200  # the last answer is used while identity fails
    new = stack.tenant()
    stack.identity.tenants[str(new)]["_fail"] = True
    r = await client.get("/api/v1/contacts/1", headers=auth(mint(new)))
    assert_problem(r, 503)
    assert r.headers["retry-after"] == "1"


# -- rate limits ------------------------------------------------------------------------------


async def test_429_with_headers_and_retry_after(client: httpx.AsyncClient, stack: Stack) -> None:
    tenant = stack.tenant(rpm=3)
    token = mint(tenant)
    remaining = []
    for _ in range(3):
        r = await client.get("/api/v1/contacts/1", headers=auth(token))
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit"] == "3"
        remaining.append(int(r.headers["x-ratelimit-remaining"]))
    assert remaining == [2, 1, 0]
    r = await client.get("/api/v1/contacts/1", headers=auth(token))
    doc = assert_problem(r, 429)
    assert doc["type"] == "https://errors.crm.example/rate-limited"
    assert r.headers["x-ratelimit-remaining"] == "0"
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= 120
    assert int(r.headers["x-ratelimit-reset"]) >= retry_after
    # another user of the same tenant has its own window
    assert (await client.get("/api/v1/contacts/1", headers=auth(mint(tenant)))).status_code == 200
    # the keys live in the tenant's key space
    keys = {k.decode() async for k in stack.redis.scan_iter(f"crm:t:{tenant}:ratelimit:*")}
    assert f"crm:t:{tenant}:ratelimit:tenant:cur" in keys
    assert any(k.startswith(f"crm:t:{tenant}:ratelimit:principal:user%3A") for k in keys)


async def test_tenant_wide_limit(client: httpx.AsyncClient, stack: Stack) -> None:
    tenant = stack.tenant(rpm=100, tenant_rpm=4)
    a, b = mint(tenant), mint(tenant)
    for _ in range(3):
        assert (await client.get("/api/v1/contacts/1", headers=auth(a))).status_code == 200
    r = await client.get("/api/v1/contacts/1", headers=auth(b))
    assert r.status_code == 200
    assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]) == ("4", "0")
    r = await client.get("/api/v1/contacts/1", headers=auth(b))
    assert_problem(r, 429)
    assert "retry-after" in r.headers


async def test_rate_limit_headers_on_every_response(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    token = mint(stack.tenant())
    suspended = mint(stack.tenant("suspended"))
    responses = [
        await client.get("/api/v1/contacts/1", headers=auth(token)),  # 200
        await client.get("/api/v1/contacts/ratelimited-upstream", headers=auth(token)),
        await client.get("/api/v1/nothing-here", headers=auth(token)),  # 404
        await client.get("/api/v1/contacts/1"),  # 401
        await client.post("/api/v1/contacts/1", headers=auth(suspended)),  # 403
        await client.post(
            "/api/v1/contacts/1", headers=auth(token, **{"Idempotency-Key": "x" * 300})
        ),  # 400
        await client.post("/api/v1/auth/login"),  # anonymous
    ]
    assert [r.status_code for r in responses] == [200, 200, 404, 401, 403, 400, 200]
    for r in responses:
        assert_rate_headers(r)
    # an upstream cannot inject its own values
    assert responses[1].headers["x-ratelimit-limit"] != "999999"


async def test_anonymous_routes_limited_per_ip(stack: Stack) -> None:
    await stack.redis.delete("crm:ip:127.0.0.1:ratelimit:cur", "crm:ip:127.0.0.1:ratelimit:prev")
    app = create_app(stack.settings(anonymous_requests_per_minute=3))
    gateway = await serve_app(app)
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as c:
            codes = [(await c.post("/api/v1/auth/login")).status_code for _ in range(3)]
            assert codes == [200, 200, 200]
            r = await c.post("/api/v1/auth/login")
            assert_problem(r, 429)
            assert int(r.headers["retry-after"]) >= 1
            # failed authentications count against the same limit
            assert (await c.get("/api/v1/contacts/1")).status_code == 429
    finally:
        await gateway.stop()
        await stack.redis.delete(
            "crm:ip:127.0.0.1:ratelimit:cur", "crm:ip:127.0.0.1:ratelimit:prev"
        )


# -- idempotency ------------------------------------------------------------------------------


async def test_idempotent_replay_and_conflicts(client: httpx.AsyncClient, stack: Stack) -> None:
    tenant = stack.tenant()
    subject = f"user:{uuid.uuid4()}"
    token = mint(tenant, sub=subject)
    headers = auth(token, **{"Idempotency-Key": "order-42"})
    first = await client.post("/api/v1/contacts/create", headers=headers, content=b'{"a": 1}')
    assert first.status_code == 201, first.text
    created = Counters.created

    replay = await client.post("/api/v1/contacts/create", headers=headers, content=b'{"a": 1}')
    assert replay.status_code == 201
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["location"] == first.headers["location"]
    assert replay.headers["content-type"] == first.headers["content-type"]
    assert "x-not-stored" not in replay.headers
    assert replay.headers["x-request-id"] != first.headers["x-request-id"]
    assert_rate_headers(replay)
    assert Counters.created == created  # not executed again
    assert "idempotent-replayed" not in first.headers

    other_body = await client.post("/api/v1/contacts/create", headers=headers, content=b"{}")
    doc = assert_problem(other_body, 409)
    assert "different request" in doc["detail"]
    other_path = await client.post("/api/v1/contacts/1", headers=headers, content=b'{"a": 1}')
    assert_problem(other_path, 409)

    # keys are per tenant and principal: another user's identical key is independent
    other_user = auth(mint(tenant), **{"Idempotency-Key": "order-42"})
    r = await client.post("/api/v1/contacts/create", headers=other_user, content=b'{"a": 1}')
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert Counters.created == created + 1

    stored = await stack.redis.pttl(f"crm:t:{tenant}:idem:user%3A{subject[5:]}:order-42")
    assert 23 * 3600 * 1000 < stored <= 24 * 3600 * 1000

    too_long = auth(token, **{"Idempotency-Key": "k" * 256})
    assert_problem(await client.post("/api/v1/contacts/create", headers=too_long), 400)
    ok_255 = auth(token, **{"Idempotency-Key": "k" * 255})
    assert (await client.post("/api/v1/contacts/create", headers=ok_255)).status_code == 201


async def test_idempotency_in_progress_is_409(client: httpx.AsyncClient, stack: Stack) -> None:
    SLOW_GATE.clear()
    SLOW_STARTED.clear()
    headers = auth(mint(stack.tenant()), **{"Idempotency-Key": "slow-1"})
    first = asyncio.create_task(client.post("/api/v1/contacts/slow", headers=headers, content=b"x"))
    await asyncio.wait_for(SLOW_STARTED.wait(), 5)
    r = await client.post("/api/v1/contacts/slow", headers=headers, content=b"x")
    doc = assert_problem(r, 409)
    assert "in progress" in doc["detail"]
    assert r.headers["retry-after"] == "1"
    SLOW_GATE.set()
    assert (await first).status_code == 201
    replay = await client.post("/api/v1/contacts/slow", headers=headers, content=b"x")
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"


async def test_5xx_is_not_stored(client: httpx.AsyncClient, stack: Stack) -> None:
    Counters.flaky = 0
    headers = auth(mint(stack.tenant()), **{"Idempotency-Key": "flaky-1"})
    assert (await client.post("/api/v1/contacts/flaky", headers=headers)).status_code == 500
    r = await client.post("/api/v1/contacts/flaky", headers=headers)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    r = await client.post("/api/v1/contacts/flaky", headers=headers)
    assert r.status_code == 201 and r.headers["idempotent-replayed"] == "true"
    assert Counters.flaky == 2


async def test_no_store_answers_are_never_kept(client: httpx.AsyncClient, stack: Stack) -> None:
    """Issue 10: a response carrying a secret shown once is not stored for 24 h."""
    tenant = stack.tenant()
    headers = auth(mint(tenant), **{"Idempotency-Key": "new-key-1"})
    first = await client.post("/api/v1/contacts/secret", headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    secret = first.json()["key"]
    runs = Counters.secrets
    found = []
    async for key in stack.redis.scan_iter(match=f"crm:t:{tenant}:*"):
        value = await stack.redis.get(key)
        if value and secret.encode() in value:
            found.append(key)
    assert found == []
    assert await stack.redis.exists(
        *[k async for k in stack.redis.scan_iter(match=f"crm:t:{tenant}:idem:*")]
    )
    # A replay neither runs the request again nor shows the secret: 409.
    replay = await client.post("/api/v1/contacts/secret", headers=headers)
    doc = assert_problem(replay, 409)
    assert "no-store" in doc["detail"] and secret not in replay.text
    assert Counters.secrets == runs


# -- circuit breaker ---------------------------------------------------------------------------


async def test_circuit_opens_on_dead_upstream_and_closes_when_back(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    token = mint(stack.tenant())
    for _ in range(3):  # circuit_failure_threshold = 3
        r = await client.get("/api/v1/campaigns/1", headers=auth(token))
        assert_problem(r, 502)
    r = await client.get("/api/v1/campaigns/1", headers=auth(token))
    assert_problem(r, 503)
    assert r.headers["retry-after"] == "1"  # circuit_cooldown_seconds = 1
    assert_rate_headers(r)
    # other upstreams are unaffected
    assert (await client.get("/api/v1/contacts/1", headers=auth(token))).status_code == 200

    port = int(stack.urls["marketing"].rsplit(":", 1)[1])
    marketing = await serve_on(upstream("marketing"), port)
    try:
        await asyncio.sleep(1.1)  # circuit_cooldown_seconds
        r = await client.get("/api/v1/campaigns/1", headers=auth(token))  # the probe
        assert r.status_code == 200 and r.json()["service"] == "marketing"
        r = await client.get("/api/v1/campaigns/2", headers=auth(token))
        assert r.status_code == 200
    finally:
        await marketing.stop()
    # down again: counts start from zero, the circuit opens after 3 more failures
    for expected in (502, 502, 502, 503):
        assert (await client.get("/api/v1/campaigns/1", headers=auth(token))).status_code == (
            expected
        )


# -- CORS ---------------------------------------------------------------------------------------


async def test_cors_preflight_and_headers(client: httpx.AsyncClient) -> None:
    origin = "https://app.crm.example"
    r = await client.options(
        "/api/v1/contacts",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, idempotency-key",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == origin
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "idempotency-key" in r.headers["access-control-allow-headers"]
    assert "x-ratelimit-remaining" not in r.headers  # answered before any layer

    r = await client.options(
        "/api/v1/contacts",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert_problem(r, 403)
    assert "access-control-allow-origin" not in r.headers

    r = await client.get("/api/v1/contacts/1", headers={"Origin": origin})
    assert r.status_code == 401  # browsers can read why
    assert r.headers["access-control-allow-origin"] == origin
    assert "x-ratelimit-remaining" in r.headers["access-control-expose-headers"]
    r = await client.get("/api/v1/contacts/1", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


# -- Redis down ----------------------------------------------------------------------------------


async def test_redis_down_fail_open_then_recovers(client: httpx.AsyncClient, stack: Stack) -> None:
    tenant = stack.tenant(rpm=1000)
    limited = stack.tenant(rpm=2)
    token, limited_token = mint(tenant), mint(limited)
    key = stack.api_key(tenant, ["contacts:read"])
    assert (await client.get("/api/v1/contacts/1", headers=auth(token))).status_code == 200

    await asyncio.to_thread(stack.redis_server.stop)
    try:
        started = time.monotonic()
        for _ in range(5):
            r = await client.get("/api/v1/contacts/1", headers=auth(token))
            assert r.status_code == 200, r.text
            assert_rate_headers(r)
        assert time.monotonic() - started < 5
        assert not stack.layers.redis.available
        # the local fallback still limits
        codes = [
            (await client.get("/api/v1/contacts/1", headers=auth(limited_token))).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        # API keys still resolve (at identity), writes pass without idempotency
        assert (await client.get("/api/v1/contacts/1", headers=auth(key))).status_code == 200
        headers = auth(token, **{"Idempotency-Key": "while-down"})
        for _ in range(2):
            r = await client.post("/api/v1/contacts/create", headers=headers)
            assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    finally:
        await asyncio.to_thread(stack.redis_server.start)

    for _ in range(50):  # the background probe reconnects (redis_retry_seconds = 0.3)
        if stack.layers.redis.available:
            break
        await asyncio.sleep(0.1)
    assert stack.layers.redis.available
    await stack.redis.connection_pool.disconnect()  # the test's own client reconnects too
    fresh = stack.tenant()
    r = await client.get("/api/v1/contacts/1", headers=auth(mint(fresh)))
    assert r.status_code == 200
    assert await stack.redis.exists(f"crm:t:{fresh}:ratelimit:tenant:cur")
    headers = auth(token, **{"Idempotency-Key": "after-recovery"})
    await client.post("/api/v1/contacts/create", headers=headers)
    r = await client.post("/api/v1/contacts/create", headers=headers)
    assert r.headers.get("idempotent-replayed") == "true"


async def test_gateway_starts_and_serves_with_redis_unreachable(stack: Stack) -> None:
    app = create_app(stack.settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    gateway = await serve_app(app)
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as c:
            token = mint(stack.tenant())
            r = await c.get("/api/v1/contacts/1", headers=auth(token))
            assert r.status_code == 200
            assert_rate_headers(r)
    finally:
        with contextlib.suppress(Exception):
            await gateway.stop()
