"""Helpers shared by the platform tests."""

from __future__ import annotations

import uuid
from typing import TypeVar

from crm_dev.testing import eventually
from crm_identity.tenants.schemas import TenantCreate
from crm_identity.tenants.service import TenantService
from crm_lib.service import ServiceRuntime

T = TypeVar("T")


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
