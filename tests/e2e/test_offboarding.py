"""Access ends on the next request, at the gateway and in every service called directly.

Deactivation, a role change, logout (one session or everywhere), a revoked OAuth client or
API key, RFC 7009 revocation, and the tenant's status (docs/auth.md "Revocation").
"""

from __future__ import annotations

import base64
import uuid

import httpx

from crm_dev.testing import RunningPlatform, SmtpSink
from crm_identity.components import identity_of
from crm_identity.models import Tenant
from crm_identity.tenants.handlers import resync_tenant_statuses
from crm_identity.tenants.service import TenantService
from crm_lib.revocation import tenant_status_key
from tests.e2e.conftest import PASSWORD, Stack, bearer, invite_user, signup_active

INTERNAL = {"Authorization": "Bearer test-internal-token"}


def _contact() -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    return {
        "first_name": "Grace",
        "last_name": f"Hopper {tag}",
        "emails": [{"address": f"g-{tag}@ex.org"}],
    }


async def _status(client: httpx.AsyncClient, method: str, path: str, token: str, **kw) -> int:
    response = await client.request(method, path, headers=bearer(token), **kw)
    return response.status_code


async def _client_token(gw: httpx.AsyncClient, client: dict) -> str:
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    issued = await gw.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert issued.status_code == 200, issued.text
    return str(issued.json()["access_token"])


async def _login(gw: httpx.AsyncClient, signed: dict) -> str:
    email = signed["user"]["email"]
    login = await gw.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


async def test_deactivated_admin_and_their_api_keys_stop_at_once(
    stack: Stack, smtp_server: SmtpSink
) -> None:
    gw, contacts, identity = stack.gateway, stack.direct["contacts"], stack.direct["identity"]
    signed = await signup_active(gw)
    owner = bearer(signed["tokens"]["access_token"])
    admin = await invite_user(gw, smtp_server, owner, ["admin"])
    token = admin["access_token"]

    key = await gw.post(
        "/api/v1/api-keys", json={"name": "everything", "scopes": ["*"]}, headers=bearer(token)
    )
    assert key.status_code == 201, key.text
    api_key = key.json()["key"]
    assert await _status(gw, "GET", "/api/v1/contacts", api_key) == 200
    # the short-lived token the gateway mints for that key (it never leaves the platform)
    resolved = await identity.post(
        "/internal/v1/api-keys/resolve", json={"key": api_key}, headers=INTERNAL
    )
    assert resolved.status_code == 200, resolved.text
    minted = resolved.json()["access_token"]
    assert await _status(contacts, "GET", "/api/v1/contacts", minted) == 200
    assert await _status(contacts, "POST", "/api/v1/contacts", token, json=_contact()) == 201
    client = await gw.post(
        "/api/v1/oauth/clients", json={"name": "etl", "scopes": ["*"]}, headers=bearer(token)
    )
    assert client.status_code == 201, client.text
    client_token = await _client_token(gw, client.json())
    assert await _status(contacts, "GET", "/api/v1/contacts", client_token) == 200

    off = await gw.post(f"/api/v1/users/{admin['user_id']}/deactivate", headers=owner)
    assert off.status_code == 200, off.text

    # the very next request, through the gateway and straight to the services
    assert await _status(gw, "POST", "/api/v1/api-keys", token, json={"name": "x"}) == 401
    invite = {"email": f"x-{uuid.uuid4().hex[:6]}@example.com", "roles": ["admin"]}
    assert await _status(gw, "POST", "/api/v1/invitations", token, json=invite) == 401
    assert await _status(gw, "POST", "/api/v1/contacts", token, json=_contact()) == 401
    assert await _status(contacts, "POST", "/api/v1/contacts", token, json=_contact()) == 401
    assert await _status(identity, "POST", "/api/v1/api-keys", token, json={"name": "y"}) == 401
    # the keys they created are revoked with them, and so are tokens minted for those keys
    assert await _status(gw, "GET", "/api/v1/contacts", api_key) == 401
    assert await _status(contacts, "GET", "/api/v1/contacts", minted) == 401
    assert await _status(contacts, "GET", "/api/v1/contacts", client_token) == 401
    refused = await gw.post(
        "/api/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.json()["client_id"],
            "client_secret": client.json()["client_secret"],
        },
    )
    assert refused.status_code in (400, 401)
    keys = (await gw.get("/api/v1/api-keys", headers=owner)).json()["data"]
    assert [k["revoked_at"] is not None for k in keys if k["id"] == key.json()["id"]] == [True]
    # the owner is untouched
    assert (await gw.get("/api/v1/contacts", headers=owner)).status_code == 200


async def test_role_change_takes_effect_on_the_next_request(
    stack: Stack, smtp_server: SmtpSink
) -> None:
    gw, identity = stack.gateway, stack.direct["identity"]
    signed = await signup_active(gw)
    owner = bearer(signed["tokens"]["access_token"])
    admin = await invite_user(gw, smtp_server, owner, ["admin"])
    old = admin["access_token"]
    assert await _status(gw, "GET", "/api/v1/api-keys", old) == 200

    user = (await gw.get(f"/api/v1/users/{admin['user_id']}", headers=owner)).json()
    down = await gw.patch(
        f"/api/v1/users/{admin['user_id']}",
        json={"roles": ["viewer"]},
        headers={**owner, "If-Match": f'"{user["version"]}"'},
    )
    assert down.status_code == 200, down.text

    # the admin token is dead everywhere; a fresh login carries the viewer role
    assert await _status(gw, "GET", "/api/v1/api-keys", old) == 401
    assert await _status(identity, "GET", "/api/v1/api-keys", old) == 401
    login = await gw.post(
        "/api/v1/auth/login", json={"email": admin["email"], "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    new = login.json()["access_token"]
    assert await _status(gw, "GET", "/api/v1/api-keys", new) == 403
    assert await _status(gw, "GET", "/api/v1/contacts", new) == 200


async def test_revoked_oauth_client_token_stops(stack: Stack) -> None:
    gw, contacts = stack.gateway, stack.direct["contacts"]
    signed = await signup_active(gw)
    owner = bearer(signed["tokens"]["access_token"])
    client = await gw.post(
        "/api/v1/oauth/clients", json={"name": "sync", "scopes": ["contacts:read"]}, headers=owner
    )
    assert client.status_code == 201, client.text
    token = await _client_token(gw, client.json())
    assert await _status(gw, "GET", "/api/v1/contacts", token) == 200
    assert await _status(contacts, "GET", "/api/v1/contacts", token) == 200

    gone = await gw.delete(f"/api/v1/oauth/clients/{client.json()['id']}", headers=owner)
    assert gone.status_code == 204
    assert await _status(gw, "GET", "/api/v1/contacts", token) == 401
    assert await _status(contacts, "GET", "/api/v1/contacts", token) == 401
    seen = await gw.post("/api/v1/oauth/introspect", data={"token": token}, headers=owner)
    assert seen.json() == {"active": False}


async def test_logout_ends_that_session_and_everywhere_ends_all(stack: Stack) -> None:
    gw, contacts = stack.gateway, stack.direct["contacts"]
    signed = await signup_active(gw)
    email = signed["user"]["email"]
    sessions = []
    for _ in range(2):
        login = await gw.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        sessions.append(login.json())
    first, second = sessions

    out = await gw.post(
        "/api/v1/auth/logout",
        json={"refresh_token": first["refresh_token"]},
        headers=bearer(first["access_token"]),
    )
    assert out.status_code == 204, out.text
    assert await _status(gw, "GET", "/api/v1/contacts", first["access_token"]) == 401
    assert await _status(contacts, "GET", "/api/v1/contacts", first["access_token"]) == 401
    # the other session goes on
    assert await _status(gw, "GET", "/api/v1/contacts", second["access_token"]) == 200

    everywhere = await gw.post(
        "/api/v1/auth/logout", json={"everywhere": True}, headers=bearer(second["access_token"])
    )
    assert everywhere.status_code == 204
    assert await _status(gw, "GET", "/api/v1/contacts", second["access_token"]) == 401
    assert await _status(contacts, "GET", "/api/v1/contacts", second["access_token"]) == 401
    assert await _status(gw, "GET", "/api/v1/users/me", signed["tokens"]["access_token"]) == 401
    # and logging in again works at once
    again = await gw.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert await _status(gw, "GET", "/api/v1/contacts", again.json()["access_token"]) == 200


async def test_services_refuse_revoked_tokens_and_honour_tenant_status(
    stack: Stack, platform: RunningPlatform
) -> None:
    gw, contacts = stack.gateway, stack.direct["contacts"]
    signed = await signup_active(gw)
    token = signed["tokens"]["access_token"]
    tenant_id = uuid.UUID(signed["tenant"]["id"])
    assert await _status(contacts, "POST", "/api/v1/contacts", token, json=_contact()) == 201

    identity = identity_of(platform.runtime("identity"))

    async def move(status: str) -> None:
        async with identity.runtime.db.platform_session() as session:
            tenant = await session.get(Tenant, tenant_id, with_for_update=True)
            assert tenant is not None
            await TenantService(session, identity.settings.provisioning_services).change_status(
                tenant, status, "test"
            )

    # a suspended tenant reads but cannot write, also when the gateway is bypassed
    await move("suspended")
    suspended = await contacts.post("/api/v1/contacts", json=_contact(), headers=bearer(token))
    assert suspended.status_code == 403
    assert suspended.json()["type"] == "https://errors.crm.example/tenant-suspended"
    assert await _status(contacts, "GET", "/api/v1/contacts", token) == 200
    await move("pending_deletion")
    assert await _status(contacts, "GET", "/api/v1/contacts", token) == 403
    await move("active")
    assert await _status(contacts, "POST", "/api/v1/contacts", token, json=_contact()) == 201

    # RFC 7009 revocation is honoured by a service called directly too
    revoked = await gw.post("/api/v1/oauth/revoke", data={"token": token}, headers=bearer(token))
    assert revoked.status_code == 200
    assert await _status(contacts, "GET", "/api/v1/contacts", token) == 401

    # identity's resync heals a lost status entry (e.g. Redis restarted without data)
    redis = identity.runtime.redis
    await move("suspended")
    await redis.delete(tenant_status_key(tenant_id))
    assert (
        await _status(
            contacts,
            "POST",
            "/api/v1/contacts",
            token2 := await _login(gw, signed),
            json=_contact(),
        )
        == 201
    )
    await resync_tenant_statuses(identity.runtime.db, redis)
    assert await redis.get(tenant_status_key(tenant_id)) == b"suspended"
    assert await _status(contacts, "POST", "/api/v1/contacts", token2, json=_contact()) == 403
