"""The adversarial suite's stack: every service's web app and a gateway of its own.

One stack per session (the platform's workers, embedded servers and SMTP sink are the
shared session fixtures of ``crm_dev.testing``). The gateway is the real one with its
default layers; only its anonymous per-IP limit is raised, because this suite sends
thousands of unauthenticated and forged-token requests on purpose, and the suite talks to
it from a source address of its own (``127.0.0.77``) so the per-IP counters it fills in
the shared Redis never slow down other suites (rate limits are tested in
``gateway/tests``).

Fixtures:

* ``sec_gw``: an ``httpx.AsyncClient`` on the gateway;
* ``spec``: the merged OpenAPI (``tests/security/spec.py``);
* ``attacker`` / ``victim``: tenants A and B, each with a user per role, and B with a
  resource of every kind (``tests/security/resources.py``);
* ``principals``: every caller of tenant A the role table speaks about, by name. Add
  callers here (revoked, deactivated, downgraded principals...) and every table-driven
  test sees them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from crm_dev.testing import PlatformStack, SmtpSink, served
from crm_gateway.app import create_app as create_gateway
from crm_lib.settings import SERVICE_NAMES
from services.contacts.tests.conftest import PASSWORD, _invite, make_tenant
from tests.security.resources import FACTORIES, ROLES, Caller, Tenant, bounded
from tests.security.spec import Spec

#: Where this suite's requests come from (a loopback address of its own).
SOURCE_ADDRESS = os.environ.get("CRM_SECURITY_SOURCE_ADDRESS", "127.0.0.77")
#: service name -> base URL of its web app behind the suite's gateway (filled by sec_gw),
#: for the checks that bypass the gateway (defence in depth).
SERVICE_URLS: dict[str, str] = {}


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def sec_gw(platform_stack: PlatformStack) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway of the suite's own in front of the shared services (its anonymous limit
    raised), reached from the suite's own source address."""
    for name in SERVICE_NAMES:
        SERVICE_URLS[name] = platform_stack.service_urls[f"{name}_url"]
    settings = platform_stack.gateway_settings(anonymous_requests_per_minute=1_000_000)
    transport = httpx.AsyncHTTPTransport(local_address=SOURCE_ADDRESS, retries=0)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    async with (
        served(create_gateway(settings)) as gw,
        httpx.AsyncClient(
            base_url=gw.url, timeout=60, transport=transport, limits=limits
        ) as client,
    ):
        yield client


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def spec(sec_gw: httpx.AsyncClient) -> Spec:
    r = await sec_gw.get("/api/v1/openapi.json")
    assert r.status_code == 200, r.text
    document = r.json()
    assert not document.get("x-missing-services"), document.get("x-missing-services")
    return Spec(document)


async def _tenant(gw: httpx.AsyncClient, smtp: SmtpSink, label: str) -> Tenant:
    crm = await make_tenant(gw, smtp)
    tenant = Tenant(label, gw, smtp, crm, canary=f"canary{label}{uuid.uuid4().hex[:8]}")
    # the members of every role are the tenant's users
    tenant.ids["user"] = [crm.user_ids["sales_rep"], *crm.user_ids.values()]
    return tenant


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def tenants(sec_gw: httpx.AsyncClient, smtp_server: SmtpSink) -> tuple[Tenant, Tenant]:
    attacker, victim = await asyncio.gather(
        _tenant(sec_gw, smtp_server, "A"), _tenant(sec_gw, smtp_server, "B")
    )
    # a resource of every kind in both (the attacker's own fill the other id slots)
    await bounded(
        [t.home(kind) for t in (attacker, victim) for kind in FACTORIES if kind != "user"],
        limit=8,
    )
    return attacker, victim


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def attacker(tenants: tuple[Tenant, Tenant]) -> Tenant:
    return tenants[0]


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def victim(tenants: tuple[Tenant, Tenant]) -> Tenant:
    return tenants[1]


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def principals(attacker: Tenant) -> dict[str, Caller]:
    """Tenant A's callers by name: one user per role and nobody.

    API keys and OAuth clients are minted per scope by the tests that need them
    (``Tenant.api_credential``). Revoked / deactivated / downgraded principals belong
    here too, and ``test_access_table`` then checks them on every operation:

    * ``Caller(name, headers, "user", role="viewer")`` for a token minted while its user
      was an admin and who is now a viewer: judged by the table's rules for ``viewer``;
    * ``Caller(name, headers, "revoked")`` (any kind other than user / api_key / client /
      anonymous) for a token that must no longer work at all (deactivated user, revoked
      key, client or session): 401 on every non-anonymous operation.
    """
    out = {role: attacker.user(role) for role in ROLES}
    out["anonymous"] = Caller("anonymous", {}, "anonymous")
    out.update(await offboarded(attacker))
    return out


async def offboarded(t: Tenant) -> dict[str, Caller]:
    """Tokens that must stop working on the next request (issue 10, "Access survives
    offboarding"): each was used once first, so every cache has seen it valid."""
    gw, owner = t.gw, t.owner

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def used(headers: dict[str, str]) -> None:
        r = await gw.get("/api/v1/tenant", headers=headers)
        assert r.status_code == 200, r.text

    (
        (deactivated, deactivated_id),
        (downgraded, downgraded_id),
        (logged_out, _),
    ) = await asyncio.gather(*(_invite(gw, t.smtp, owner, "admin") for _ in range(3)))
    key = await t.create("POST", "/api/v1/api-keys", json={"name": "revoked", "scopes": ["*"]})
    client = await t.api_credential("client", ("*", "users:read"))
    client_row = next(
        c["id"]
        for c in (await t.create("GET", "/api/v1/oauth/clients"))["data"]
        if c["name"] == client.name
    )
    for headers in (
        bearer(deactivated),
        bearer(downgraded),
        bearer(logged_out),
        bearer(key["key"]),
        client.headers,
    ):
        await used(headers)
    await t.create("POST", f"/api/v1/users/{deactivated_id}/deactivate")
    await t.create("PATCH", f"/api/v1/users/{downgraded_id}", json={"roles": ["viewer"]})
    await t.create("DELETE", f"/api/v1/api-keys/{key['id']}", want=(204,))
    await t.create("DELETE", f"/api/v1/oauth/clients/{client_row}", want=(204,))
    r = await gw.post("/api/v1/auth/logout", json={"everywhere": True}, headers=bearer(logged_out))
    assert r.status_code == 204, r.text
    # an access token its holder revoked (RFC 7009)
    revoked_token = await _second_token(t)
    r = await gw.post(
        "/api/v1/oauth/revoke", data={"token": revoked_token}, headers=bearer(revoked_token)
    )
    assert r.status_code == 200, r.text
    t.credentials.pop(client.name)  # never hand the revoked client out again
    return {
        "deactivated admin": Caller("deactivated admin", bearer(deactivated), "revoked"),
        "admin downgraded to viewer (old token)": Caller(
            "admin downgraded to viewer (old token)", bearer(downgraded), "revoked"
        ),
        "logged out everywhere": Caller("logged out everywhere", bearer(logged_out), "revoked"),
        "revoked API key": Caller("revoked API key", bearer(key["key"]), "revoked"),
        "revoked OAuth client's token": Caller(
            "revoked OAuth client's token", client.headers, "revoked"
        ),
        "access token revoked by its holder": Caller(
            "access token revoked by its holder", bearer(revoked_token), "revoked"
        ),
    }


async def _second_token(t: Tenant) -> str:
    """A fresh access token of the tenant's viewer (its main token stays valid)."""
    me = await t.create("GET", "/api/v1/users/me", headers=t.crm.auth("viewer"))
    r = await t.gw.post("/api/v1/auth/login", json={"email": me["email"], "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]
