"""Helpers shared by the platform tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from crm_identity.tenants.schemas import TenantCreate
from crm_identity.tenants.service import TenantService
from crm_lib.service import ServiceRuntime

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns a truthy value (outcome-based waiting, not timing)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value {last!r}")


async def create_tenant(identity: ServiceRuntime, slug: str | None = None) -> uuid.UUID:
    slug = slug or f"t-{uuid.uuid4().hex[:12]}"
    async with identity.db.platform_session() as session:
        svc = TenantService(session, identity.settings.provisioning_services)  # type: ignore[attr-defined]
        tenant = await svc.create(TenantCreate(name=f"Company {slug}", slug=slug))
        return tenant.id


async def tenant_status(identity: ServiceRuntime, tenant_id: uuid.UUID) -> str:
    async with identity.db.platform_session() as session:
        svc = TenantService(session, identity.settings.provisioning_services)  # type: ignore[attr-defined]
        return (await svc.get(tenant_id)).status


async def wait_status(
    identity: ServiceRuntime, tenant_id: uuid.UUID, status: str, timeout: float = 30.0
) -> None:
    async def probe() -> bool:
        return await tenant_status(identity, tenant_id) == status

    await eventually(probe, timeout=timeout)
