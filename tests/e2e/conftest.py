"""The whole platform behind the real gateway: every service's web app served on its own
port (so tests can also call a service directly, as an attacker inside the network could),
the workers running in-process, and the gateway in front."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest_asyncio

from crm_dev.testing import PlatformStack, SmtpSink, eventually
from crm_dev.testing_logs import remember_secret
from crm_lib.settings import SERVICE_NAMES

PASSWORD = remember_secret("Correct-Horse-42-battery")


@dataclass
class Stack:
    gateway: httpx.AsyncClient
    #: service name -> a client talking to that service directly (no gateway)
    direct: dict[str, httpx.AsyncClient] = field(default_factory=dict)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def stack(platform_stack: PlatformStack) -> AsyncIterator[Stack]:
    direct = {
        name: httpx.AsyncClient(base_url=platform_stack.service_urls[f"{name}_url"], timeout=30)
        for name in SERVICE_NAMES
    }
    yield Stack(platform_stack.gateway, direct)
    for one in direct.values():
        await one.aclose()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def gateway(stack: Stack) -> httpx.AsyncClient:
    return stack.gateway


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def signup_active(gw: httpx.AsyncClient, plan: str = "pro") -> dict[str, Any]:
    """A new company, waited on until every service has provisioned it."""
    tag = uuid.uuid4().hex[:8]
    r = await gw.post(
        "/api/v1/signup",
        json={
            "company_name": f"Journey {tag}",
            "admin_name": "Owner",
            "email": f"owner-{tag}@example.com",
            "password": PASSWORD,
            "plan": plan,
        },
    )
    assert r.status_code == 201, r.text
    signed = r.json()
    owner = bearer(signed["tokens"]["access_token"])

    async def usable() -> bool:
        t = await gw.get("/api/v1/tenant", headers=owner)
        if t.status_code != 200 or t.json()["tenant"]["status"] not in ("active", "trialing"):
            return False
        # the gateway's short tenant cache may still say "provisioning"
        return (await gw.get("/api/v1/contacts", headers=owner)).status_code == 200

    await eventually(usable)
    return signed


async def invite_user(
    gw: httpx.AsyncClient, smtp: SmtpSink, owner: dict[str, str], roles: list[str]
) -> dict[str, Any]:
    """Invite a colleague with ``roles`` and accept by the emailed link: the token pair."""
    email = f"{roles[0]}-{uuid.uuid4().hex[:8]}@example.com"
    invite = await gw.post(
        "/api/v1/invitations", json={"email": email, "roles": roles}, headers=owner
    )
    assert invite.status_code == 201, invite.text
    messages = await eventually(lambda: smtp.to(email))
    found = re.search(r"token=([A-Za-z0-9.]+)", messages[-1].get_content())
    assert found is not None
    accepted = await gw.post(
        "/api/v1/invitations/accept",
        json={"token": found.group(1), "full_name": roles[0].title(), "password": PASSWORD},
    )
    assert accepted.status_code == 201, accepted.text
    return {**accepted.json(), "email": email}
