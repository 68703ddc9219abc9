"""Tenant isolation of the data layer under concurrency, with a tiny pool."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from crm_contacts.app import SCHEMA as CONTACTS_SCHEMA
from crm_contacts.models import Company, Contact
from crm_lib.migrations import provision_schema
from crm_lib.settings import PlatformSettings
from crm_lib.tenancy import Database, tenant_schema


class Boom(Exception):
    pass


async def _provision(db: Database, tenant_id: uuid.UUID) -> None:
    async with db.tenant_connection(tenant_id) as conn:
        await provision_schema(conn, tenant_id, CONTACTS_SCHEMA)


@pytest.mark.parametrize("bad", ["a.b", "*", ">", "x'; DROP SCHEMA platform; --", "", "tenant_1"])
def test_schema_names_come_only_from_valid_tenant_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        tenant_schema(bad)


async def test_interleaved_sessions_never_cross_tenants(scratch_settings: PlatformSettings) -> None:
    db = Database(scratch_settings, pool_size=2, max_overflow=0, pool_timeout=60)
    tenants = [uuid.uuid4() for _ in range(3)]
    try:
        for t in tenants:
            await _provision(db, t)
            async with db.tenant_session(t) as session:
                session.add_all(
                    Contact(id=uuid.uuid4(), first_name=str(t), email=f"{i}@{t.hex}.test")
                    for i in range(20)
                )

        rng = random.Random(7)
        seen_violations: list[str] = []

        async def orm_read(t: uuid.UUID) -> None:
            async with db.tenant_session(t) as session:
                names = set((await session.execute(select(Contact.first_name))).scalars())
                await asyncio.sleep(0)
                if names != {str(t)}:
                    seen_violations.append(f"orm {t}: {names}")

        async def text_read(t: uuid.UUID) -> None:
            async with db.tenant_session(t) as session:
                # Unqualified raw SQL: must resolve inside the tenant schema only.
                rows = (
                    await session.execute(text("SELECT DISTINCT first_name FROM contacts"))
                ).all()
                await asyncio.sleep(0)
                if {r[0] for r in rows} != {str(t)}:
                    seen_violations.append(f"text {t}: {rows}")

        async def write_then_raise(t: uuid.UUID) -> None:
            with pytest.raises(Boom):
                async with db.tenant_session(t) as session:
                    session.add(Contact(id=uuid.uuid4(), first_name="ghost-raise"))
                    await session.flush()
                    await asyncio.sleep(0)
                    raise Boom

        async def write_then_rollback(t: uuid.UUID) -> None:
            async with db.tenant_session(t) as session:
                await session.execute(
                    text("INSERT INTO contacts (id, first_name) VALUES (:id, 'ghost-text')"),
                    {"id": uuid.uuid4()},
                )
                await asyncio.sleep(0)
                await session.rollback()

        async def failing_sql(t: uuid.UUID) -> None:
            with pytest.raises(DBAPIError):
                async with db.tenant_session(t) as session:
                    await session.execute(text("SELECT 1/0"))

        kinds = [orm_read, text_read, write_then_raise, write_then_rollback, failing_sql]
        jobs = [rng.choice(kinds)(rng.choice(tenants)) for _ in range(400)]
        await asyncio.gather(*jobs)
        assert seen_violations == []

        for t in tenants:
            async with db.tenant_session(t) as session:
                count = (await session.execute(select(func.count()).select_from(Contact))).scalar()
                ghosts = (
                    await session.execute(
                        select(func.count()).where(Contact.first_name.like("ghost%"))
                    )
                ).scalar()
            assert (count, ghosts) == (20, 0)

        # Pooled connections carry no tenant state once their transaction is over.
        async with db.engine.connect() as conn:
            path = (await conn.execute(text("SHOW search_path"))).scalar()
            assert "tenant_" not in str(path)
    finally:
        await db.dispose()


async def test_missing_table_raises_instead_of_reading_elsewhere(
    scratch_settings: PlatformSettings,
) -> None:
    db = Database(scratch_settings, pool_size=2, max_overflow=0)
    full, broken = uuid.uuid4(), uuid.uuid4()
    try:
        for t in (full, broken):
            await _provision(db, t)
        async with db.tenant_session(full) as session:
            session.add(Company(id=uuid.uuid4(), name="visible only to full"))
        async with db.engine.begin() as conn:
            await conn.execute(text(f'DROP TABLE "{tenant_schema(broken)}".contacts CASCADE'))
            await conn.execute(text(f'DROP TABLE "{tenant_schema(broken)}".companies CASCADE'))
            # A same-named table in public must not be picked up either.
            await conn.execute(text("CREATE TABLE IF NOT EXISTS public.companies (name text)"))
            await conn.execute(text("INSERT INTO public.companies VALUES ('public leak')"))

        with pytest.raises(ProgrammingError):
            async with db.tenant_session(broken) as session:
                await session.execute(select(Company.name))
        with pytest.raises(ProgrammingError):
            async with db.tenant_session(broken) as session:
                await session.execute(text("SELECT name FROM companies"))

        async with db.tenant_session(full) as session:
            names = list((await session.execute(text("SELECT name FROM companies"))).scalars())
        assert names == ["visible only to full"]
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE IF EXISTS public.companies"))
        await db.dispose()
