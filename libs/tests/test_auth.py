"""crm_lib.auth against real ES256 keys and a JWKS served over HTTP in-process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from joserfc import jwt
from joserfc.jwk import ECKey
from litestar import Litestar, get

from crm_dev.testing import RunningServer, served
from crm_lib.auth import (
    JWKSVerifier,
    Principal,
    install_auth,
    principal_dependency,
    require_roles,
    require_scope,
)
from crm_lib.http import ProblemError
from crm_lib.http import create_app as create_service_app
from crm_lib.settings import PlatformSettings

TENANT = uuid.UUID("7d0c8f5e-2a53-4f0e-9c1e-6b1c0f2a9d11")
OTHER_TENANT = uuid.UUID("1b9a3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d")
USER = uuid.UUID("0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d")

KEY1 = ECKey.generate_key("P-256", parameters={"kid": "k1", "use": "sig", "alg": "ES256"})
KEY2 = ECKey.generate_key("P-256", parameters={"kid": "k2", "use": "sig", "alg": "ES256"})
FORGER = ECKey.generate_key("P-256", parameters={"kid": "k1"})


def public_jwk(key: ECKey) -> dict[str, Any]:
    return key.as_dict(private=False)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": "crm-identity",
        "aud": "crm-api",
        "sub": f"user:{USER}",
        "kind": "user",
        "tid": str(TENANT),
        "roles": ["sales_rep"],
        "plan": "pro",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def mint(key: ECKey = KEY1, header: dict[str, Any] | None = None, **overrides: Any) -> str:
    head = {"alg": "ES256", "kid": key.kid, "typ": "at+jwt", **(header or {})}
    return jwt.encode(head, claims(**overrides), key)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], body: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"


class JWKSHost:
    """A real HTTP server publishing a JWKS the test can change."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": [public_jwk(KEY1)]}
        self.calls = 0
        self.running: RunningServer | None = None

        @get("/.well-known/jwks.json", sync_to_thread=False)
        def jwks() -> dict[str, Any]:
            self.calls += 1
            return self.document

        self.app = Litestar([jwks])

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def jwks_host() -> AsyncIterator[JWKSHost]:
    host = JWKSHost()
    async with served(host.app) as running:
        host.running = running
        yield host


def make_verifier(host: JWKSHost, **kw: Any) -> JWKSVerifier:
    return JWKSVerifier(PlatformSettings(identity_url=host.url), **kw)


async def rejected(verifier: JWKSVerifier, token: str) -> ProblemError:
    with pytest.raises(ProblemError) as info:
        await verifier.verify(token)
    assert info.value.status_code == 401
    assert info.value.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return info.value


# -- verification ------------------------------------------------------------------------


async def test_valid_user_token(jwks_host: JWKSHost) -> None:
    verifier = make_verifier(jwks_host)
    jti = uuid.uuid4().hex
    token = mint(jti=jti, roles=["admin", "viewer"])
    principal = await verifier.verify(token)
    assert principal == Principal(
        tenant_id=TENANT,
        subject=f"user:{USER}",
        kind="user",
        user_id=USER,
        roles=frozenset({"admin", "viewer"}),
        scopes=None,
        token_id=jti,
        issued_at=principal.issued_at,
    )
    assert principal.issued_at > 0  # iat kept: compared with not-before markers
    # verified tokens are remembered: no second fetch, same answer
    fetches = verifier.fetches
    assert await verifier.verify(token) == principal
    assert verifier.fetches == fetches == 1


async def test_client_and_api_key_tokens_carry_scopes(jwks_host: JWKSHost) -> None:
    verifier = make_verifier(jwks_host)
    client = await verifier.verify(
        mint(sub="client:crm_cli-42", kind="client", roles=[], scope="contacts:read deals:*")
    )
    assert client.kind == "client" and client.user_id is None
    assert client.scopes == frozenset({"contacts:read", "deals:*"})
    key_id = uuid.uuid4()
    key = await verifier.verify(mint(sub=f"api_key:{key_id}", kind="api_key", roles=[]))
    assert key.kind == "api_key" and key.scopes == frozenset()  # no scope claim: nothing


async def test_expired_not_yet_valid_wrong_audience_and_issuer(jwks_host: JWKSHost) -> None:
    verifier = make_verifier(jwks_host, leeway_seconds=5)
    now = int(time.time())
    assert "expired" in (await rejected(verifier, mint(exp=now - 60))).detail
    await rejected(verifier, mint(nbf=now + 120))
    await rejected(verifier, mint(aud="other-api"))
    await rejected(verifier, mint(aud=["other-api"]))
    await rejected(verifier, mint(iss="evil-identity"))
    await rejected(verifier, mint(exp=None))
    # inside the leeway is fine, and aud may be a list
    assert await verifier.verify(mint(exp=now - 2, aud=["x", "crm-api"]))


async def test_forged_signature_rejected(jwks_host: JWKSHost) -> None:
    verifier = make_verifier(jwks_host)
    forged = mint(FORGER)  # same kid "k1", another key
    assert "signature" in (await rejected(verifier, forged)).detail
    # a valid token with a tampered payload
    good = mint(roles=["viewer"])
    head, _, sig = good.split(".")
    tampered = f"{head}.{b64(json.dumps(claims(roles=['owner'])).encode())}.{sig}"
    await rejected(verifier, tampered)


async def test_alg_none_and_hs256_with_public_key_rejected(jwks_host: JWKSHost) -> None:
    verifier = make_verifier(jwks_host)
    body = claims(roles=["owner"])
    none_token = unsigned({"alg": "none", "typ": "at+jwt", "kid": "k1"}, body) + "."
    assert "ES256" in (await rejected(verifier, none_token)).detail
    # the classic key-confusion attack: HMAC with the public key as the secret
    for secret in (
        json.dumps(public_jwk(KEY1)).encode(),
        KEY1.as_pem(private=False),
    ):
        signing_input = unsigned({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}, body)
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        await rejected(verifier, f"{signing_input}.{b64(mac)}")
    for alg in ("ES384", "RS256", "EdDSA"):
        token = unsigned({"alg": alg, "typ": "at+jwt", "kid": "k1"}, body) + ".c2ln"
        await rejected(verifier, token)


async def test_typ_kid_and_garbage(jwks_host: JWKSHost) -> None:
    verifier = make_verifier(jwks_host)
    await rejected(verifier, mint(header={"typ": "JWT"}))
    assert await verifier.verify(mint(header={"typ": "application/at+jwt"}))
    for garbage in ("", "abc", "a.b.c", "a.b", "é.é.é", "x" * 9000, mint() + ".x"):
        await rejected(verifier, garbage)


@pytest.mark.parametrize(
    "bad",
    [
        {"tid": "not-a-uuid"},
        {"tid": None},
        {"tid": str(TENANT).upper()},
        {"sub": "user:nope"},
        {"sub": "admin:1"},
        {"sub": f"client:{USER}", "kind": "user"},
        {"sub": "client:bad id", "kind": "client"},
        {"jti": None},
        {"roles": "owner"},
        {"scope": ["contacts:read"]},
    ],
)
async def test_malformed_claims_rejected(jwks_host: JWKSHost, bad: dict[str, Any]) -> None:
    await rejected(make_verifier(jwks_host), mint(**bad))


async def test_unknown_kid_refetches_once_then_401(jwks_host: JWKSHost) -> None:
    verifier = make_verifier(jwks_host, min_refetch_seconds=60)
    assert await verifier.verify(mint())
    assert verifier.fetches == 1
    calls = jwks_host.calls
    await rejected(verifier, mint(KEY2))  # unknown kid: too soon after the first fetch
    assert verifier.fetches == 1

    verifier = make_verifier(jwks_host, min_refetch_seconds=60)  # loads on first use
    assert "unknown key" in (await rejected(verifier, mint(KEY2))).detail
    assert verifier.fetches == 1  # the initial load; no extra refetch within 60 s
    assert jwks_host.calls == calls + 1


async def test_key_rotation_picked_up_by_refetch(jwks_host: JWKSHost) -> None:
    verifier = make_verifier(jwks_host, min_refetch_seconds=0)
    assert await verifier.verify(mint())
    await rejected(verifier, mint(KEY2))  # refetched, still unknown
    assert verifier.fetches == 2
    jwks_host.document = {"keys": [public_jwk(KEY1), public_jwk(KEY2)]}
    try:
        principal = await verifier.verify(mint(KEY2))  # unknown kid -> refetch -> found
        assert principal.tenant_id == TENANT
        assert verifier.fetches == 3
        # retiring k1 forgets tokens already verified with it
        old = mint()
        assert await verifier.verify(old)
        jwks_host.document = {"keys": [public_jwk(KEY2)]}
        await verifier.refresh()
        await rejected(verifier, old)
    finally:
        jwks_host.document = {"keys": [public_jwk(KEY1)]}


async def test_concurrent_unknown_kids_share_one_fetch(jwks_host: JWKSHost) -> None:
    import asyncio

    verifier = make_verifier(jwks_host, min_refetch_seconds=0)
    assert await verifier.verify(mint())
    results = await asyncio.gather(
        *(verifier.verify(mint(KEY2)) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, ProblemError) and r.status_code == 401 for r in results)
    assert verifier.fetches <= 3  # one shared refetch (two if one started after the first)


async def test_jwks_unreachable_is_503_not_401() -> None:
    from crm_dev.devstack import free_port

    verifier = JWKSVerifier(
        PlatformSettings(identity_url=f"http://127.0.0.1:{free_port()}"), fetch_timeout_seconds=1
    )
    with pytest.raises(ProblemError) as info:
        await verifier.verify(mint())
    assert info.value.status_code == 503


async def test_static_jwks_and_providers() -> None:
    static = JWKSVerifier(jwks={"keys": [public_jwk(KEY1), {"kty": "oct", "k": "c2VjcmV0"}]})
    assert (await static.verify(mint())).tenant_id == TENANT
    await rejected(static, mint(KEY2))

    calls = []

    async def provider() -> dict[str, Any]:
        calls.append(1)
        return {"keys": [public_jwk(KEY2)]}

    dynamic = JWKSVerifier(PlatformSettings(), jwks_provider=provider)
    assert await dynamic.verify(mint(KEY2))
    assert calls == [1]
    sync = JWKSVerifier(PlatformSettings(), jwks_provider=lambda: {"keys": [public_jwk(KEY1)]})
    assert await sync.verify(mint())
    # private parts in a published JWKS are ignored, never used
    leaky = JWKSVerifier(jwks={"keys": [KEY1.as_dict(private=True)]})
    assert await leaky.verify(mint())


# -- scopes and roles --------------------------------------------------------------------


def principal(scopes: frozenset[str] | None, roles: frozenset[str] = frozenset()) -> Principal:
    return Principal(
        tenant_id=TENANT,
        subject="client:c",
        kind="client",
        user_id=None,
        roles=roles,
        scopes=scopes,
        token_id="j",
    )


def test_scope_logic() -> None:
    user = principal(None, frozenset({"sales_rep"}))
    assert user.allows("contacts:write") and user.allows("anything:read")
    assert user.has_role("admin", "sales_rep") and not user.has_role("admin")

    p = principal(frozenset({"contacts:write", "deals:*", "tickets:read"}))
    assert p.allows("contacts:write") and p.allows("contacts:read")  # write implies read
    assert p.allows("deals:read") and p.allows("deals:write")
    assert p.allows("tickets:read") and not p.allows("tickets:write")  # read not write
    assert not p.allows("campaigns:read")
    assert principal(frozenset({"*"})).allows("campaigns:write")
    assert not principal(frozenset()).allows("contacts:read")


# -- Litestar integration ------------------------------------------------------------------


@get("/api/v1/me", sync_to_thread=False)
def me(principal: Principal) -> dict[str, Any]:
    return {"tenant_id": str(principal.tenant_id), "subject": principal.subject}


@get("/api/v1/admin-only", guards=[require_roles("owner", "admin")], sync_to_thread=False)
def admin_only(principal: Principal) -> dict[str, str]:
    return {"ok": principal.subject}


@get("/api/v1/contacts-read", guards=[require_scope("contacts:read")], sync_to_thread=False)
def contacts_read() -> dict[str, str]:
    return {"ok": "read"}


@get("/api/v1/contacts-write", guards=[require_scope("contacts:write")], sync_to_thread=False)
def contacts_write() -> dict[str, str]:
    return {"ok": "write"}


@pytest_asyncio.fixture(loop_scope="session")
async def service(jwks_host: JWKSHost) -> AsyncIterator[httpx.AsyncClient]:
    state: dict[str, Any] = {}
    install_auth(state, make_verifier(jwks_host))
    app = create_service_app(
        service="authtest",
        route_handlers=[me, admin_only, contacts_read, contacts_write],
        readiness={},
        dependencies={"principal": principal_dependency()},
        state=state,
    )
    async with served(app) as running, httpx.AsyncClient(base_url=running.url) as client:
        yield client


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


async def test_principal_dependency(service: httpx.AsyncClient) -> None:
    r = await service.get("/api/v1/me", headers=bearer(mint()))
    assert r.status_code == 200, r.text
    assert r.json() == {"tenant_id": str(TENANT), "subject": f"user:{USER}"}

    r = await service.get("/api/v1/me")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")

    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "token"):
        r = await service.get("/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'

    r = await service.get("/api/v1/me", headers=bearer(mint(FORGER)))
    assert r.status_code == 401 and r.json()["status"] == 401


async def test_tenant_header_must_match_token(service: httpx.AsyncClient) -> None:
    token = mint()
    ok = await service.get("/api/v1/me", headers=bearer(token, **{"X-Tenant-ID": str(TENANT)}))
    assert ok.status_code == 200
    for other in (str(OTHER_TENANT), "garbage"):
        r = await service.get("/api/v1/me", headers=bearer(token, **{"X-Tenant-ID": other}))
        assert r.status_code == 401, other
        assert r.json()["type"] == "https://errors.crm.example/invalid-token"


async def test_role_and_scope_guards(service: httpx.AsyncClient) -> None:
    rep = mint(roles=["sales_rep"])
    admin = mint(roles=["admin"])
    r = await service.get("/api/v1/admin-only", headers=bearer(rep))
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "https://errors.crm.example/forbidden"
    assert (await service.get("/api/v1/admin-only", headers=bearer(admin))).status_code == 200
    assert (await service.get("/api/v1/admin-only")).status_code == 401

    # users: roles decide, scope guards pass
    assert (await service.get("/api/v1/contacts-write", headers=bearer(rep))).status_code == 200
    reader = mint(sub="client:reader", kind="client", roles=[], scope="contacts:read")
    writer = mint(sub="client:writer", kind="client", roles=[], scope="contacts:write")
    assert (await service.get("/api/v1/contacts-read", headers=bearer(reader))).status_code == 200
    r = await service.get("/api/v1/contacts-write", headers=bearer(reader))
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert (await service.get("/api/v1/contacts-read", headers=bearer(writer))).status_code == 200
    assert (await service.get("/api/v1/admin-only", headers=bearer(writer))).status_code == 403


async def test_verified_token_cache_is_bounded() -> None:
    verifier = JWKSVerifier(jwks={"keys": [public_jwk(KEY1)]}, token_cache_size=10)
    tokens = [mint() for _ in range(25)]
    for token in tokens:
        assert await verifier.verify(token)
        assert len(verifier._tokens) <= 10
    assert tokens[-1] in verifier._tokens
