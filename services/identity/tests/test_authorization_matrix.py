"""Every identity endpoint x every role, anonymous, other tenants and bad tokens."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest
import pytest_asyncio
from joserfc import jwt
from joserfc.jwk import ECKey

from crm_dev.testing import RunningPlatform, SmtpSink, eventually
from crm_identity.components import identity_of
from crm_identity.roles import ROLES
from services.identity.tests.conftest import STRONG_PASSWORD, signup

MANAGERS = {"owner", "admin"}
EVERYONE = set(ROLES)


def _rand(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# (method, path, json body factory, roles allowed)
ENDPOINTS: list[tuple[str, str, Any, set[str]]] = [
    ("GET", "/api/v1/tenant", None, EVERYONE),
    ("GET", "/api/v1/users", None, EVERYONE),
    ("GET", "/api/v1/users/me", None, EVERYONE),
    ("GET", "/api/v1/users/{target}", None, EVERYONE),
    ("PATCH", "/api/v1/users/{target}", lambda: {"full_name": "Renamed"}, MANAGERS),
    ("POST", "/api/v1/users/{target}/reactivate", None, MANAGERS),
    ("GET", "/api/v1/seats", None, MANAGERS),
    ("GET", "/api/v1/invitations", None, MANAGERS),
    (
        "POST",
        "/api/v1/invitations",
        lambda: {"email": f"{_rand('inv')}@example.com", "roles": ["viewer"]},
        MANAGERS,
    ),
    ("GET", "/api/v1/teams", None, EVERYONE),
    ("POST", "/api/v1/teams", lambda: {"name": _rand("team")}, MANAGERS),
    ("GET", "/api/v1/api-keys", None, MANAGERS),
    ("POST", "/api/v1/api-keys", lambda: {"name": "k", "scopes": ["contacts:read"]}, MANAGERS),
    ("GET", "/api/v1/oauth/clients", None, MANAGERS),
    ("POST", "/api/v1/oauth/clients", lambda: {"name": "c", "scopes": ["contacts:read"]}, MANAGERS),
    ("POST", "/api/v1/tenant/exports", None, MANAGERS),
    ("GET", f"/api/v1/tenant/exports/{uuid.uuid4()}", None, MANAGERS),
    ("GET", "/api/v1/invitations?status=pending", None, MANAGERS),
    ("POST", f"/api/v1/invitations/{uuid.uuid4()}/resend", None, MANAGERS),
    ("DELETE", f"/api/v1/invitations/{uuid.uuid4()}", None, MANAGERS),
    ("PATCH", f"/api/v1/teams/{uuid.uuid4()}", lambda: {"name": "x"}, MANAGERS),
    ("DELETE", f"/api/v1/teams/{uuid.uuid4()}", None, MANAGERS),
    ("DELETE", f"/api/v1/api-keys/{uuid.uuid4()}", None, MANAGERS),
    ("DELETE", f"/api/v1/oauth/clients/{uuid.uuid4()}", None, MANAGERS),
    ("DELETE", "/api/v1/tenant", lambda: {"confirm_slug": "not-the-slug"}, {"owner"}),
    # Billing: owners and admins only (the tenant is on an enterprise trial, 20 seats).
    ("GET", "/api/v1/billing", None, MANAGERS),
    ("GET", "/api/v1/billing/invoices", None, MANAGERS),
    ("PUT", "/api/v1/billing/seats", lambda: {"seats": 20}, MANAGERS),
    ("PATCH", "/api/v1/billing/subscription", lambda: {"plan": "enterprise"}, MANAGERS),
    ("POST", "/api/v1/billing/subscription/cancel", None, MANAGERS),
    ("POST", "/api/v1/billing/subscription/reactivate", None, MANAGERS),
    ("POST", "/api/v1/billing/portal", None, MANAGERS),
]


class Tenant:
    def __init__(self, tokens: dict[str, str], target: str, owner_id: str) -> None:
        self.tokens = tokens
        self.target = target
        self.owner_id = owner_id


async def _member(
    api: httpx.AsyncClient, smtp: SmtpSink, owner_auth: dict[str, str], role: str
) -> tuple[str, str]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    r = await api.post(
        "/api/v1/invitations", json={"email": email, "roles": [role]}, headers=owner_auth
    )
    assert r.status_code == 201, r.text
    messages = await eventually(lambda: smtp.to(email))
    token = re.search(r"token=([A-Za-z0-9.]+)", messages[-1].get_content()).group(1)  # type: ignore[union-attr]
    accepted = await api.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": role.title(), "password": STRONG_PASSWORD},
    )
    assert accepted.status_code == 201, accepted.text
    return accepted.json()["access_token"], accepted.json()["user_id"]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def tenant(identity_api: httpx.AsyncClient, smtp_server: SmtpSink) -> Tenant:
    owner = await signup(identity_api, plan="enterprise")
    tokens = {"owner": owner.access_token}
    for role in ROLES:
        if role != "owner":
            tokens[role], _ = await _member(identity_api, smtp_server, owner.auth, role)
    _, target = await _member(identity_api, smtp_server, owner.auth, "sales_rep")
    me = (await identity_api.get("/api/v1/users/me", headers=owner.auth)).json()
    return Tenant(tokens, target, me["id"])


def _call(
    api: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> Any:
    return api.request(method, path, json=body() if body else None, headers=headers)


@pytest.mark.parametrize("role", ROLES)
async def test_role_matrix(identity_api: httpx.AsyncClient, tenant: Tenant, role: str) -> None:
    headers = {"Authorization": f"Bearer {tenant.tokens[role]}"}
    for method, path, body, allowed in ENDPOINTS:
        r = await _call(identity_api, method, path.format(target=tenant.target), body, headers)
        where = f"{role} {method} {path}: {r.status_code} {r.text[:200]}"
        assert r.status_code < 500, where
        if role in allowed:
            assert r.status_code not in (401, 403), where
        else:
            assert r.status_code == 403, where
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_anonymous_and_bad_tokens_get_401(
    identity_api: httpx.AsyncClient, tenant: Tenant, platform: RunningPlatform
) -> None:
    keys = identity_of(platform.runtime("identity")).keys
    tid = uuid.UUID(int=0)
    real = tenant.tokens["owner"]
    expired, _, _ = await keys.mint(
        tenant_id=tid,
        subject=f"user:{uuid.uuid4()}",
        kind="user",
        roles=["owner"],
        ttl_seconds=-120,
    )
    forger = ECKey.generate_key("P-256", private=True)
    header = jwt.decode(real, await _public_keyset(identity_api)).header
    now = int(time.time())
    forged = jwt.encode(
        {"alg": "ES256", "kid": header["kid"], "typ": "at+jwt"},
        {
            "iss": "crm-identity",
            "aud": "crm-api",
            "sub": f"user:{uuid.uuid4()}",
            "kind": "user",
            "tid": str(uuid.uuid4()),
            "roles": ["owner"],
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": "x",
        },
        forger,
    )
    unknown_kid = jwt.encode(
        {"alg": "ES256", "kid": "nope", "typ": "at+jwt"},
        {"sub": "user:x", "exp": now + 300},
        forger,
    )
    none_alg = real.split(".")[0] + "." + real.split(".")[1] + "."
    bad = {
        "anonymous": {},
        "expired": expired,
        "forged": forged,
        "unknown kid": unknown_kid,
        "alg none": none_alg,
        "garbage": "not-a-token",
        "basic": "Basic Zm9vOmJhcg==",
    }
    for name, token in bad.items():
        if isinstance(token, dict):
            headers = token
        elif token.startswith("Basic "):
            headers = {"Authorization": token}
        else:
            headers = {"Authorization": f"Bearer {token}"}
        for method, path, body, _allowed in ENDPOINTS:
            r = await _call(identity_api, method, path.format(target=tenant.target), body, headers)
            assert r.status_code == 401, f"{name} {method} {path}: {r.status_code} {r.text[:200]}"
            assert r.headers["content-type"].startswith("application/problem+json")


async def _public_keyset(api: httpx.AsyncClient) -> Any:
    from joserfc.jwk import KeySet

    return KeySet.import_key_set((await api.get("/.well-known/jwks.json")).json())


async def test_other_tenant_never_sees_or_changes_this_tenant(
    identity_api: httpx.AsyncClient, tenant: Tenant
) -> None:
    intruder = await signup(identity_api)
    for method, path, body in [
        ("GET", f"/api/v1/users/{tenant.target}", None),
        ("PATCH", f"/api/v1/users/{tenant.target}", lambda: {"full_name": "Hacked"}),
        ("POST", f"/api/v1/users/{tenant.target}/deactivate", None),
        ("PUT", f"/api/v1/teams/{uuid.uuid4()}/members/{tenant.target}", None),
    ]:
        r = await _call(identity_api, method, path, body, intruder.auth)
        assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text}"
    users = (await identity_api.get("/api/v1/users", headers=intruder.auth)).json()["data"]
    assert [u["email"] for u in users] == [intruder.email]
    # The gateway-set tenant header cannot be pointed elsewhere either.
    spoof = await identity_api.get(
        "/api/v1/users", headers={**intruder.auth, "X-Tenant-ID": str(uuid.uuid4())}
    )
    assert spoof.status_code == 401
    target = await identity_api.get(
        f"/api/v1/users/{tenant.target}",
        headers={"Authorization": f"Bearer {tenant.tokens['owner']}"},
    )
    assert target.json()["full_name"] != "Hacked"
