"""Sign-up, login, refresh rotation, rate limits: identity's HTTP API on real servers.

Login throttling and what login/sign-up reveal: ``test_login_throttling.py``."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import func, select

from crm_dev.testing import RunningPlatform, eventually
from crm_identity.models import Tenant
from services.identity.tests.conftest import (
    STRONG_PASSWORD,
    from_address,
    random_address,
    signup,
)


async def test_signup_answers_at_once_then_tenant_turns_active(
    identity_api: httpx.AsyncClient,
) -> None:
    account = await signup(identity_api, wait=False)
    assert account.body["tenant"]["status"] == "provisioning"
    assert account.body["user"]["roles"] == ["owner"]
    assert account.body["status_url"] == "/api/v1/tenant"

    async def active() -> bool:
        r = await identity_api.get("/api/v1/tenant", headers=account.auth)
        assert r.status_code == 200, r.text
        return r.json()["tenant"]["status"] == "active"

    await eventually(active)
    r = await identity_api.get("/api/v1/tenant", headers=account.auth)
    body = r.json()
    assert body["seats"] == {  # free plan: 2 seats (CRM_FREE_PLAN_SEATS)
        "limit": 2,
        "active_users": 1,
        "pending_invitations": 0,
        "used": 1,
        "available": 1,
    }
    me = await identity_api.get("/api/v1/users/me", headers=account.auth)
    assert me.json()["email"] == account.email


async def test_bad_signups_create_nothing(
    identity_api: httpx.AsyncClient, platform: RunningPlatform
) -> None:
    taken = await signup(identity_api)
    identity = platform.runtime("identity")
    async with identity.db.platform_session() as session:
        before = (await session.execute(select(func.count()).select_from(Tenant))).scalar_one()
    cases = [
        ({"email": taken.email, "password": "short"}, 422),
        ({"slug": taken.slug, "plan": "platinum"}, 422),
        ({"password": "short"}, 422),
        ({"password": "alllowercase"}, 422),
        ({"email": "not-an-email"}, 422),
        ({"email": "a@b"}, 422),
        ({"plan": "platinum"}, 422),
        ({"company_name": 12}, 400),
        ({"company_name": ""}, 400),
        ({"unexpected": "field"}, 400),
        ({"company_name": "x" * 5000}, 400),
    ]
    for overrides, status in cases:
        tag = uuid.uuid4().hex[:8]
        body = {
            "company_name": f"Co {tag}",
            "admin_name": "Bo",
            "email": f"bo-{tag}@example.com",
            "password": STRONG_PASSWORD,
            **overrides,
        }
        r = await identity_api.post("/api/v1/signup", json=body)
        assert r.status_code in (status, 422 if status == 400 else status), (overrides, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    async with identity.db.platform_session() as session:
        after = (await session.execute(select(func.count()).select_from(Tenant))).scalar_one()
    assert after == before


async def test_login_refresh_rotation_and_reuse_detection(identity_api: httpx.AsyncClient) -> None:
    account = await signup(identity_api)
    login = await identity_api.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    assert login.status_code == 200, login.text
    first = login.json()["refresh_token"]
    rotated = await identity_api.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    second = rotated.json()["refresh_token"]
    assert second != first
    # Reusing the rotated token revokes the whole family, including the newest token.
    reuse = await identity_api.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert reuse.status_code == 401
    dead = await identity_api.post("/api/v1/auth/refresh", json={"refresh_token": second})
    assert dead.status_code == 401
    # The sign-up session is another family and still works; logout ends it.
    ok = await identity_api.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert ok.status_code == 200
    token = ok.json()
    out = await identity_api.post(
        "/api/v1/auth/logout",
        json={"refresh_token": token["refresh_token"]},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert out.status_code == 204
    gone = await identity_api.post(
        "/api/v1/auth/refresh", json={"refresh_token": token["refresh_token"]}
    )
    assert gone.status_code == 401


async def test_key_rotation_keeps_old_tokens_valid(
    identity_api: httpx.AsyncClient, platform: RunningPlatform
) -> None:
    account = await signup(identity_api)
    before = (await identity_api.get("/.well-known/jwks.json")).json()["keys"]
    rotated = await identity_api.post(
        "/internal/v1/keys/rotate", headers={"Authorization": "Bearer test-operator-token"}
    )
    assert rotated.status_code == 200
    new_kid = rotated.json()["kid"]
    from crm_identity.components import identity_of

    identity_of(
        platform.runtime("identity")
    ).keys._cache = None  # other replicas refresh within seconds
    after = (await identity_api.get("/.well-known/jwks.json")).json()["keys"]
    assert {k["kid"] for k in before} < {k["kid"] for k in after}
    assert new_kid in {k["kid"] for k in after}
    # A token signed by the retired key still works until it expires...
    assert (await identity_api.get("/api/v1/users/me", headers=account.auth)).status_code == 200
    # ...and new tokens carry the new key id.
    login = await identity_api.post(
        "/api/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    import base64
    import json

    header = json.loads(base64.urlsafe_b64decode(login.json()["access_token"].split(".")[0] + "=="))
    assert header["kid"] == new_kid and header["alg"] == "ES256" and header["typ"] == "at+jwt"
    unauthorized = await identity_api.post("/internal/v1/keys/rotate")
    assert unauthorized.status_code == 401


async def test_login_is_rate_limited_per_address(identity_api: httpx.AsyncClient) -> None:
    ip = from_address(random_address())  # as the gateway forwards it, with its proof
    statuses = []
    for _ in range(32):
        r = await identity_api.post(
            "/api/v1/auth/login",
            json={"email": f"x-{uuid.uuid4().hex[:6]}@example.com", "password": "Whatever-123"},
            headers=ip,
        )
        statuses.append(r.status_code)
    assert statuses[:30] == [401] * 30
    assert statuses[30:] == [429, 429]
    assert r.headers["retry-after"]
