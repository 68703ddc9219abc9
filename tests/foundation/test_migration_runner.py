"""The orchestrated tenant migration runner: failures are isolated, reruns resume."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import text

from crm_lib.migrations import Track, lagging_tenants, migrate_tenants, upgrade_tenant_schema
from crm_lib.platform_tables import TenantRegistryRow
from crm_lib.settings import PlatformSettings
from crm_lib.tenancy import Database, tenant_schema

TRACK = Track("runner-test", Path(__file__).parent / "runner_track", per_tenant=True)


async def _versions(db: Database, tenants: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    found = {}
    async with db.engine.connect() as conn:
        for t in tenants:
            found[t] = (
                await conn.execute(
                    text(f'SELECT version_num FROM "{tenant_schema(t)}".alembic_version')
                )
            ).scalar_one()
    return found


async def test_fifty_schemas_one_failing_then_resume(
    scratch_settings: PlatformSettings, scratch_db: Database
) -> None:
    db = scratch_db
    tenants = sorted(uuid.uuid4() for _ in range(50))
    for t in tenants:
        async with db.tenant_connection(t) as conn:
            assert await upgrade_tenant_schema(conn, t, TRACK, "w1") == "w1"
        async with db.platform_session() as session:
            session.add(
                TenantRegistryRow(
                    tenant_id=t, status="active", schema_name=tenant_schema(t), schema_version="w1"
                )
            )
    broken = tenants[19]  # tenant 20 already has the column w2 adds: its upgrade fails
    async with db.engine.begin() as conn:
        await conn.execute(
            text(f'ALTER TABLE "{tenant_schema(broken)}".widgets ADD COLUMN color text')
        )

    settings = scratch_settings.model_copy(update={"migrate_concurrency": 2})
    report = await migrate_tenants(settings, TRACK, concurrency=2, chunk_size=10)

    assert len(report.results) == 50
    assert [r.tenant_id for r in report.failed] == [str(broken)]
    assert "color" in (report.failed[0].error or "")
    versions = await _versions(db, tenants)
    assert versions[broken] == "w1"  # its transaction rolled back whole
    assert all(v == "w2" for t, v in versions.items() if t != broken)
    async with db.platform_session() as session:
        rows = {
            r.tenant_id: r
            for r in (
                await session.execute(
                    text(
                        "SELECT tenant_id, schema_version, migration_status, migration_error "
                        "FROM platform.tenant_registry"
                    )
                )
            ).all()
        }
    assert rows[broken].migration_status == "failed"
    assert "color" in rows[broken].migration_error
    assert rows[broken].schema_version == "w1"
    assert {rows[t].schema_version for t in tenants if t != broken} == {"w2"}

    # Fix the tenant and rerun: only the lagging schema is touched.
    async with db.engine.begin() as conn:
        await conn.execute(text(f'ALTER TABLE "{tenant_schema(broken)}".widgets DROP COLUMN color'))
    rerun = await migrate_tenants(settings, TRACK, concurrency=2)
    assert [r.tenant_id for r in rerun.results] == [str(broken)]
    assert rerun.failed == []
    assert set((await _versions(db, tenants)).values()) == {"w2"}
    assert await lagging_tenants(db, TRACK.head) == []

    # A no-op run finds nothing to do from the registry alone.
    noop = await migrate_tenants(settings, TRACK, concurrency=2)
    assert noop.results == []
    async with db.engine.connect() as conn:
        cols = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM information_schema.columns "
                    "WHERE table_name = 'widgets' AND column_name = 'color'"
                )
            )
        ).scalar_one()
        idx = (
            await conn.execute(
                text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_widgets_color'")
            )
        ).scalar_one()
    assert cols == 50 and idx == 50
