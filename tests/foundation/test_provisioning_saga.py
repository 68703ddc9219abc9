"""The provisioning and deletion saga over real NATS, across all five services."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from crm_lib.settings import SERVICE_NAMES
from crm_lib.testing import RunningPlatform
from crm_lib.tenancy import tenant_schema
from tests.foundation.helpers import create_tenant, tenant_status, wait_status


async def _schema_exists(platform: RunningPlatform, service: str, schema: str) -> bool:
    async with platform.runtime(service).db.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}
        )
        return found.first() is not None


async def test_several_tenants_provision_concurrently_and_become_active(
    platform: RunningPlatform,
) -> None:
    identity = platform.runtime("identity")
    tenant_ids = await asyncio.gather(*(create_tenant(identity) for _ in range(5)))
    for tenant_id in tenant_ids:
        await wait_status(identity, tenant_id, "active")
    for tenant_id in tenant_ids:
        for service in SERVICE_NAMES:
            assert await _schema_exists(platform, service, tenant_schema(tenant_id))
            async with platform.runtime(service).db.platform_session() as session:
                row = (
                    await session.execute(
                        text(
                            "SELECT status, schema_version FROM platform.tenant_registry "
                            "WHERE tenant_id = :t"
                        ),
                        {"t": tenant_id},
                    )
                ).one()
            head = platform.definitions[service].schema.tenant_track.head
            assert row.status == "active"
            assert row.schema_version == head


async def test_deletion_drops_every_schema_and_keeps_registry(platform: RunningPlatform) -> None:
    identity = platform.runtime("identity")
    keep, doomed = await asyncio.gather(create_tenant(identity), create_tenant(identity))
    await wait_status(identity, keep, "active")
    await wait_status(identity, doomed, "active")

    from crm_identity.tenants.service import TenantService

    async with identity.db.platform_session() as session:
        await TenantService(session, identity.settings.provisioning_services).request_deletion(  # type: ignore[attr-defined]
            doomed
        )
    await wait_status(identity, doomed, "deleted")
    for service in SERVICE_NAMES:
        assert not await _schema_exists(platform, service, tenant_schema(doomed))
        assert await _schema_exists(platform, service, tenant_schema(keep))
    assert await tenant_status(identity, keep) == "active"
