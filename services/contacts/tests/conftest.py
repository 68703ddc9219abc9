"""Contacts test fixtures: a tenant with one user per role, reached through the gateway."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest_asyncio

from crm_dev.testing import SmtpSink, eventually
from crm_dev.testing_logs import remember_secret

PASSWORD = remember_secret("Correct-Horse-42-battery")  # never in a log (log scan)
ROLES = ("owner", "admin", "sales_manager", "sales_rep", "marketer", "support_agent", "viewer")


@dataclass
class CrmTenant:
    tenant_id: str
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


async def _invite(
    gw: httpx.AsyncClient, smtp: SmtpSink, owner: dict[str, str], role: str
) -> tuple[str, str]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"

    async def invited() -> httpx.Response | None:
        # The gateway may still hold the "provisioning" answer for a moment.
        r = await gw.post(
            "/api/v1/invitations", json={"email": email, "roles": [role]}, headers=owner
        )
        return None if r.status_code == 409 else r

    r = await eventually(invited)
    assert r.status_code == 201, r.text
    messages = await eventually(lambda: smtp.to(email))
    match = re.search(r"token=([A-Za-z0-9.]+)", messages[-1].get_content())
    assert match
    accepted = await gw.post(
        "/api/v1/invitations/accept",
        json={"token": match.group(1), "full_name": role.title(), "password": PASSWORD},
    )
    assert accepted.status_code == 201, accepted.text
    return accepted.json()["access_token"], accepted.json()["user_id"]


async def make_tenant(
    gw: httpx.AsyncClient, smtp: SmtpSink, *, roles: tuple[str, ...] = ROLES
) -> CrmTenant:
    tag = uuid.uuid4().hex[:8]
    r = await gw.post(
        "/api/v1/signup",
        json={
            "company_name": f"Contacts {tag}",
            "admin_name": "Olivia Owner",
            "email": f"owner-{tag}@example.com",
            "password": PASSWORD,
            "plan": "enterprise",
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    tenant = CrmTenant(body["tenant"]["id"])
    tenant.tokens["owner"] = body["tokens"]["access_token"]
    tenant.user_ids["owner"] = body["user"]["id"]
    owner = tenant.auth("owner")

    async def active() -> bool:
        got = await gw.get("/api/v1/tenant", headers=owner)
        return got.status_code == 200 and got.json()["tenant"]["status"] in ("active", "trialing")

    await eventually(active)
    wanted = [r for r in roles if r != "owner"] + (["sales_rep2"] if "sales_rep" in roles else [])
    for name in wanted:
        token, user_id = await _invite(gw, smtp, owner, name.rstrip("2"))
        tenant.tokens[name], tenant.user_ids[name] = token, user_id
    # The contacts read model learns users by event: wait until it knows them all.
    for name, user_id in tenant.user_ids.items():

        async def known(uid: str = user_id) -> bool:
            got = await gw.post(
                "/api/v1/contacts?allow_duplicate=true",
                json={"first_name": "Probe", "owner_id": uid},
                headers=owner,
            )
            if got.status_code == 201:
                await gw.delete(f"/api/v1/contacts/{got.json()['id']}", headers=owner)
                return True
            return False

        await eventually(known)
        del name
    return tenant


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def crm(platform_gateway: httpx.AsyncClient, smtp_server: SmtpSink) -> CrmTenant:
    return await make_tenant(platform_gateway, smtp_server)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def other_crm(platform_gateway: httpx.AsyncClient, smtp_server: SmtpSink) -> CrmTenant:
    return await make_tenant(platform_gateway, smtp_server, roles=("owner",))


def headers(tenant: CrmTenant, who: str, **extra: str) -> dict[str, Any]:
    return {**tenant.auth(who), **extra}
