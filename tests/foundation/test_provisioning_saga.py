"""The provisioning and deletion saga over real NATS, across all five services."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from crm_dev.testing import RunningPlatform
from crm_lib.settings import SERVICE_NAMES
from crm_lib.tenancy import tenant_schema
from tests.foundation.helpers import create_tenant, eventually, tenant_status, wait_status


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


async def test_failure_is_visible_with_reason_and_retry_is_safe(platform: RunningPlatform) -> None:
    import uuid

    from crm_identity.tenants.schemas import TenantCreate
    from crm_identity.tenants.service import TenantService

    identity = platform.runtime("identity")
    sales = platform.runtime("sales")
    tenant_id = uuid.uuid4()
    schema = tenant_schema(tenant_id)
    # Something already sits where sales would build this tenant's schema.
    async with sales.db.engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.execute(text(f'CREATE TABLE "{schema}".pipelines (id int)'))

    async with identity.db.platform_session() as session:
        svc = TenantService(session, identity.settings.provisioning_services)  # type: ignore[attr-defined]
        await svc.create(
            TenantCreate(name="Doomed Inc", slug=f"f-{tenant_id.hex[:10]}"), tenant_id=tenant_id
        )
    await wait_status(identity, tenant_id, "provisioning_failed")

    async def others_reported() -> object:
        async with identity.db.platform_session() as session:
            svc = TenantService(session, identity.settings.provisioning_services)  # type: ignore[attr-defined]
            tenant = await svc.get(tenant_id)
        states = {s.service: s.state for s in tenant.services}
        return tenant if sum(v == "provisioned" for v in states.values()) == 4 else None

    tenant = await eventually(others_reported)
    assert tenant.status == "provisioning_failed"
    assert tenant.status_reason and tenant.status_reason.startswith("sales:")
    assert "pipelines" in tenant.status_reason
    states = {s.service: s.state for s in tenant.services}
    assert states["sales"] == "provisioning_failed"
    assert states["contacts"] == "provisioned"
    # The rogue table was left alone, nothing half-built next to it.
    async with sales.db.engine.connect() as conn:
        tables = (
            await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
            )
        ).scalars()
        assert list(tables) == ["pipelines"]

    async with sales.db.engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    async with identity.db.platform_session() as session:
        await TenantService(session, identity.settings.provisioning_services).retry_provisioning(  # type: ignore[attr-defined]
            tenant_id
        )
    await wait_status(identity, tenant_id, "active")
    for service in SERVICE_NAMES:
        assert await _schema_exists(platform, service, schema)
    # Retrying an active tenant is refused and changes nothing.
    from crm_lib.http import ProblemError

    with pytest.raises(ProblemError) as refused:
        async with identity.db.platform_session() as session:
            await TenantService(
                session, identity.settings.provisioning_services
            ).retry_provisioning(  # type: ignore[attr-defined]
                tenant_id
            )
    assert refused.value.status_code == 409
    assert await tenant_status(identity, tenant_id) == "active"
