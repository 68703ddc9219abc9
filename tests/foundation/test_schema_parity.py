"""A tenant schema from the fast provisioning path equals the migration chain's."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_lib.migrations import provision_schema, upgrade_tenant_schema
from crm_lib.registry import load_service
from crm_lib.settings import SERVICE_NAMES, PlatformSettings
from crm_lib.tenancy import Database, tenant_schema

_CATALOGUE = {
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, is_nullable,
               replace(coalesce(column_default, ''), :s || '.', ''), coalesce(character_maximum_length, 0),
               coalesce(numeric_precision, 0), coalesce(numeric_scale, 0)
        FROM information_schema.columns WHERE table_schema = :s
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, replace(indexdef, :s || '.', '')
        FROM pg_indexes WHERE schemaname = :s ORDER BY 1, 2""",
    "constraints": """
        SELECT cl.relname, co.conname, co.contype,
               replace(pg_get_constraintdef(co.oid), :s || '.', '')
        FROM pg_constraint co
        JOIN pg_class cl ON cl.oid = co.conrelid
        JOIN pg_namespace n ON n.oid = co.connamespace
        WHERE n.nspname = :s ORDER BY 1, 2""",
    "tables": """
        SELECT tablename FROM pg_tables WHERE schemaname = :s ORDER BY 1""",
}


async def _describe(conn: AsyncConnection, schema: str) -> dict[str, list[tuple[object, ...]]]:
    return {
        name: [tuple(r) for r in (await conn.execute(text(sql), {"s": schema})).all()]
        for name, sql in _CATALOGUE.items()
    }


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_fast_path_equals_migration_chain(
    service: str, scratch_settings: PlatformSettings
) -> None:
    schema_def = load_service(service).schema
    db = Database(scratch_settings)
    fast, chain = uuid.uuid4(), uuid.uuid4()
    try:
        async with db.tenant_connection(fast) as conn:
            assert await provision_schema(conn, fast, schema_def) == schema_def.tenant_track.head
        async with db.tenant_connection(chain) as conn:
            version = await upgrade_tenant_schema(conn, chain, schema_def.tenant_track)
            assert version == schema_def.tenant_track.head
        async with db.engine.connect() as conn:
            fast_desc = await _describe(conn, tenant_schema(fast))
            chain_desc = await _describe(conn, tenant_schema(chain))
        assert fast_desc["tables"], "nothing was created"
        assert fast_desc == chain_desc
        # Provisioning again is a no-op and never touches another tenant's version.
        async with db.tenant_connection(fast) as conn:
            await provision_schema(conn, fast, schema_def)
    finally:
        await db.dispose()
