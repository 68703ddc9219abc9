"""The public journey through the real gateway, identity and workers on real servers."""

from __future__ import annotations

import re
import uuid

import httpx
from sqlalchemy import update

from crm_dev.testing import RunningPlatform, SmtpSink, eventually
from crm_dev.testing_logs import remember_secret
from crm_identity.models import Tenant

PASSWORD = remember_secret("Correct-Horse-42-battery")


async def _signup(gw: httpx.AsyncClient) -> dict:
    tag = uuid.uuid4().hex[:8]
    r = await gw.post(
        "/api/v1/signup",
        json={
            "company_name": f"Journey {tag}",
            "admin_name": "Owner",
            "email": f"owner-{tag}@example.com",
            "password": PASSWORD,
            "plan": "pro",
        },
    )
    assert r.status_code == 201, r.text
    assert r.headers["x-request-id"] and "x-ratelimit-limit" in r.headers
    return r.json()


async def test_signup_to_revoked_key(gateway: httpx.AsyncClient, smtp_server: SmtpSink) -> None:
    signed = await _signup(gateway)
    owner = {"Authorization": f"Bearer {signed['tokens']['access_token']}"}

    async def active() -> bool:
        r = await gateway.get("/api/v1/tenant", headers=owner)
        assert r.status_code == 200, r.text
        # A paid-plan sign-up is on its trial: usable like an active tenant.
        return r.json()["tenant"]["status"] in ("active", "trialing")

    await eventually(active)
    # Active means usable at once: the gateway does not sit on a stale "provisioning".
    ready = await eventually(lambda: _passes(gateway, owner), timeout=2)
    assert ready
    email = signed["user"]["email"]
    login = await gateway.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    owner = {"Authorization": f"Bearer {login.json()['access_token']}"}
    for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert header in login.headers

    colleague = f"rep-{uuid.uuid4().hex[:8]}@example.com"
    invite = await gateway.post(
        "/api/v1/invitations", json={"email": colleague, "roles": ["sales_rep"]}, headers=owner
    )
    assert invite.status_code == 201, invite.text
    messages = await eventually(lambda: smtp_server.to(colleague))
    token = re.search(r"token=([A-Za-z0-9.]+)", messages[-1].get_content()).group(1)  # type: ignore[union-attr]
    accepted = await gateway.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": "Rep", "password": PASSWORD},
    )
    assert accepted.status_code == 201, accepted.text
    rep_id = accepted.json()["user_id"]

    changed = await gateway.patch(
        f"/api/v1/users/{rep_id}", json={"roles": ["sales_manager"]}, headers=owner
    )
    assert changed.status_code == 200 and changed.json()["roles"] == ["sales_manager"]

    created = await gateway.post(
        "/api/v1/api-keys", json={"name": "sync", "scopes": ["users:read"]}, headers=owner
    )
    assert created.status_code == 201
    key = {"Authorization": f"Bearer {created.json()['key']}"}
    listed = await gateway.get("/api/v1/users", headers=key)
    assert listed.status_code == 200, listed.text
    assert {u["email"] for u in listed.json()["data"]} == {email, colleague}
    # Scopes hold: the key cannot manage users.
    denied = await gateway.post("/api/v1/teams", json={"name": "x"}, headers=key)
    assert denied.status_code == 403

    revoked = await gateway.delete(f"/api/v1/api-keys/{created.json()['id']}", headers=owner)
    assert revoked.status_code == 204
    after = await gateway.get("/api/v1/users", headers=key)
    assert after.status_code == 401
    assert after.headers["content-type"].startswith("application/problem+json")


async def _passes(gateway: httpx.AsyncClient, auth: dict[str, str]) -> bool:
    return (await gateway.get("/api/v1/users/me", headers=auth)).status_code == 200


async def test_cross_tenant_and_suspension(
    gateway: httpx.AsyncClient, platform: RunningPlatform
) -> None:
    a, b = await _signup(gateway), await _signup(gateway)
    a_auth = {"Authorization": f"Bearer {a['tokens']['access_token']}"}
    b_auth = {"Authorization": f"Bearer {b['tokens']['access_token']}"}
    for auth in (a_auth, b_auth):
        await eventually(lambda auth=auth: _is_active(gateway, auth))
        # The gateway may hold the "provisioning" answer for a moment longer.
        await eventually(lambda auth=auth: _passes(gateway, auth))
    a_user = a["user"]["id"]
    assert (await gateway.get(f"/api/v1/users/{a_user}", headers=b_auth)).status_code == 404
    spoofed = await gateway.get(
        "/api/v1/users", headers={**b_auth, "X-Tenant-ID": a["tenant"]["id"]}
    )
    assert spoofed.status_code == 200
    assert [u["id"] for u in spoofed.json()["data"]] == [b["user"]["id"]]

    identity = platform.runtime("identity")
    async with identity.db.platform_session() as session:
        await session.execute(
            update(Tenant)
            .where(Tenant.id == uuid.UUID(a["tenant"]["id"]))
            .values(status="suspended")
        )

    async def read_only() -> bool:
        r = await gateway.post("/api/v1/teams", json={"name": "blocked"}, headers=a_auth)
        return r.status_code == 403 and r.json()["type"].endswith("tenant-suspended")

    await eventually(read_only)
    assert (await gateway.get("/api/v1/users", headers=a_auth)).status_code == 200
    assert (
        await gateway.post("/api/v1/teams", json={"name": "fine"}, headers=b_auth)
    ).status_code == 201


async def _is_active(gateway: httpx.AsyncClient, auth: dict[str, str]) -> bool:
    r = await gateway.get("/api/v1/tenant", headers=auth)
    return r.status_code == 200 and r.json()["tenant"]["status"] in ("active", "trialing")
