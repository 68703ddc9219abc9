from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio

from crm_lib.service import build_app
from crm_lib.testing import RunningPlatform, served

STRONG_PASSWORD = "Correct-Horse-42-battery"


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def identity_api(platform: RunningPlatform) -> AsyncIterator[httpx.AsyncClient]:
    rt = platform.runtime("identity")
    app = build_app(platform.definitions["identity"], rt.settings, runtime=rt)
    async with served(app) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@dataclass
class SignedUp:
    tenant_id: str
    slug: str
    email: str
    password: str
    access_token: str
    refresh_token: str
    body: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def signup(client: httpx.AsyncClient, **overrides: Any) -> SignedUp:
    tag = uuid.uuid4().hex[:10]
    body = {
        "company_name": f"Acme {tag}",
        "admin_name": "Ada Admin",
        "email": f"ada-{tag}@example.com",
        "password": STRONG_PASSWORD,
        **overrides,
    }
    response = await client.post("/api/v1/signup", json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    return SignedUp(
        data["tenant"]["id"],
        data["tenant"]["slug"],
        body["email"],
        body["password"],
        data["tokens"]["access_token"],
        data["tokens"]["refresh_token"],
        data,
    )
