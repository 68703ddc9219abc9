"""Alembic tracks and the orchestrated tenant-schema migration runner.

Each service database has up to three Alembic tracks:

* ``lib``      -- the shared platform tables owned by ``crm_lib`` (outbox, inbox,
                  tenant registry replica), version table ``platform.alembic_version_lib``;
* ``platform`` -- the service's own tables in the ``platform`` schema (optional);
* ``tenant``   -- the service's per-tenant tables, applied to every tenant schema,
                  each schema keeping its own ``alembic_version`` table.

New tenants are provisioned from the current head without replaying the chain
(``create_all`` of the tenant metadata, then stamping that schema alone). The
runner upgrades lagging schemas -- found with one query on the registry --
one transaction per schema with ``lock_timeout``/``statement_timeout``, records
the version (or the error) per schema in that same transaction, continues past
failures and simply resumes on the next run.

Alembic's ``op``/``context`` proxies are process globals, so one process runs
one schema at a time; parallelism comes from worker processes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_lib.settings import PlatformSettings
from crm_lib.tenancy import PLATFORM_SCHEMA, Database, quote_ident, tenant_schema

LIB_PLATFORM_SCRIPTS = Path(__file__).parent / "platform"


@dataclass(frozen=True)
class Track:
    """One Alembic script directory and where its version table lives."""

    name: str
    script_location: Path
    version_table: str = "alembic_version"
    per_tenant: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        # Ship only the definition to worker processes, not the loaded scripts.
        return (Track, (self.name, self.script_location, self.version_table, self.per_tenant))

    @cached_property
    def script(self) -> ScriptDirectory:
        cfg = Config()
        cfg.set_main_option("script_location", str(self.script_location))
        return ScriptDirectory.from_config(cfg)

    @cached_property
    def head(self) -> str:
        head = self.script.get_current_head()
        if head is None:
            raise RuntimeError(f"track {self.name} has no revisions")
        return head


LIB_TRACK = Track("lib", LIB_PLATFORM_SCRIPTS, version_table="alembic_version_lib")


@dataclass(frozen=True)
class ServiceSchema:
    """What a service declares about its database."""

    service: str
    tenant_metadata: MetaData
    tenant_track: Track
    platform_track: Track | None = None
    # Left out of tenant data exports: secrets and credentials ("table" or "table.column").
    export_exclude: frozenset[str] = frozenset()

    @property
    def platform_tracks(self) -> list[Track]:
        return [LIB_TRACK] + ([self.platform_track] if self.platform_track else [])


def _upgrade_sync(
    conn: Connection, track: Track, target: str, version_table_schema: str | None
) -> None:
    script = track.script

    def fn(rev: Any, _context: Any) -> Any:
        return script._upgrade_revs(target, rev)

    cfg = Config()
    cfg.set_main_option("script_location", str(track.script_location))
    with EnvironmentContext(cfg, script, fn=fn, destination_rev=target) as env:
        env.configure(
            connection=conn,
            version_table=track.version_table,
            version_table_schema=version_table_schema,
            transactional_ddl=True,
        )
        with env.begin_transaction():
            env.run_migrations()


def _current_version_sync(
    conn: Connection, track: Track, version_table_schema: str | None
) -> str | None:
    ctx = MigrationContext.configure(
        conn,
        opts={"version_table": track.version_table, "version_table_schema": version_table_schema},
    )
    return ctx.get_current_revision()


async def upgrade_platform(db: Database, service_schema: ServiceSchema) -> None:
    """Create the platform schema and bring the platform tracks to head."""
    async with db.engine.begin() as conn:
        # Serialise concurrent starters (replicas, CLI) on one database.
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('crm_platform_migrate'))"))
        await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(PLATFORM_SCHEMA)}"))
        for track in service_schema.platform_tracks:
            await conn.run_sync(_upgrade_sync, track, "heads", PLATFORM_SCHEMA)


# A fixed, valid tenant schema name used only while rendering the provisioning script.
_TEMPLATE_SCHEMA = tenant_schema(uuid.UUID(int=0))
_script_cache: dict[int, list[str]] = {}


def provisioning_script(service_schema: ServiceSchema) -> list[str]:
    """The DDL that builds a tenant schema at head, rendered once per service.

    Statements name the template schema; ``provision_schema`` swaps in the real
    (validated) schema name and sends the whole script in one round trip. The
    version table matches Alembic's own, so the chain continues from here.
    """
    key = id(service_schema)
    if key not in _script_cache:
        from sqlalchemy.dialects import postgresql
        from sqlalchemy.schema import CreateIndex, CreateTable

        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
        template = MetaData(naming_convention=service_schema.tenant_metadata.naming_convention)
        statements: list[str] = []
        for table in service_schema.tenant_metadata.sorted_tables:
            copy = table.to_metadata(template, schema=_TEMPLATE_SCHEMA)
            statements.append(str(CreateTable(copy).compile(dialect=dialect)).strip())
            statements.extend(
                str(CreateIndex(index).compile(dialect=dialect)).strip()
                for index in sorted(copy.indexes, key=lambda i: str(i.name))
            )
        statements.append(
            f'CREATE TABLE "{_TEMPLATE_SCHEMA}".{service_schema.tenant_track.version_table} '
            "(version_num VARCHAR(32) NOT NULL, "
            f"CONSTRAINT {service_schema.tenant_track.version_table}_pkc PRIMARY KEY (version_num))"
        )
        statements.append(
            f'INSERT INTO "{_TEMPLATE_SCHEMA}".{service_schema.tenant_track.version_table} '
            f"(version_num) VALUES ('{service_schema.tenant_track.head}')"
        )
        _script_cache[key] = statements
    return _script_cache[key]


async def provision_schema(
    conn: AsyncConnection, tenant_id: uuid.UUID | str, service_schema: ServiceSchema
) -> str:
    """Fast path: build a tenant schema at head and stamp that schema only.

    ``conn`` must come from ``Database.tenant_connection`` / ``bind_tenant`` (inside
    its transaction). Idempotent: an already versioned schema is left alone. Objects
    sitting in an unversioned schema make it fail (reported, never built around).
    """
    schema = tenant_schema(tenant_id)
    track = service_schema.tenant_track
    quoted = quote_ident(schema)
    await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
    versioned = (
        await conn.execute(
            text("SELECT to_regclass(:name) IS NOT NULL"),
            {"name": f"{quoted}.{track.version_table}"},
        )
    ).scalar_one()
    if versioned:
        current = (
            await conn.execute(text(f"SELECT version_num FROM {quoted}.{track.version_table}"))
        ).scalar_one_or_none()
        if current is not None:
            return str(current)
    # Schema names are [a-z0-9_] only (validated by tenant_schema), so a plain
    # replacement of the template name is exact.
    script = ";\n".join(provisioning_script(service_schema)).replace(_TEMPLATE_SCHEMA, schema)
    # One simple-protocol round trip for the whole script (no parameters in it).
    raw = await conn.get_raw_connection()
    await raw.driver_connection.execute(script)  # type: ignore[union-attr]
    return track.head


async def upgrade_tenant_schema(
    conn: AsyncConnection, tenant_id: uuid.UUID | str, track: Track, target: str = "heads"
) -> str | None:
    """Replay the tenant chain on one schema (conn bound to that tenant)."""
    schema = tenant_schema(tenant_id)
    await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}"))
    await conn.run_sync(_upgrade_sync, track, target, schema)
    return await conn.run_sync(_current_version_sync, track, schema)


# --------------------------------------------------------------------------- runner


@dataclass
class TenantResult:
    tenant_id: str
    ok: bool
    version: str | None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class RunReport:
    service: str
    head: str
    results: list[TenantResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[TenantResult]:
        return [r for r in self.results if not r.ok]

    @property
    def succeeded(self) -> list[TenantResult]:
        return [r for r in self.results if r.ok]


_LAGGING = text(
    """
    SELECT tenant_id FROM platform.tenant_registry
    WHERE status NOT IN ('deleted', 'deprovisioned')
      AND schema_version IS DISTINCT FROM :head
    ORDER BY tenant_id
    """
)


async def lagging_tenants(db: Database, head: str) -> list[uuid.UUID]:
    """Tenants whose schema is not at ``head``: one query, no catalogue walk."""
    async with db.engine.connect() as conn:
        return list((await conn.execute(_LAGGING, {"head": head})).scalars())


async def _migrate_one(
    db: Database, tenant_id: uuid.UUID, track: Track, target: str, settings: PlatformSettings
) -> TenantResult:
    started = time.perf_counter()
    try:
        async with db.tenant_connection(tenant_id) as conn:
            await conn.execute(
                text("SELECT set_config('lock_timeout', :v, true)"),
                {"v": f"{settings.migrate_lock_timeout_ms}ms"},
            )
            await conn.execute(
                text("SELECT set_config('statement_timeout', :v, true)"),
                {"v": f"{settings.database_statement_timeout_ms}ms"},
            )
            version = await upgrade_tenant_schema(conn, tenant_id, track, target)
            await conn.execute(
                text(
                    "UPDATE platform.tenant_registry SET schema_version = :v, "
                    "migration_status = 'ok', migration_error = NULL, migrated_at = now(), "
                    "updated_at = now() WHERE tenant_id = :t"
                ),
                {"v": version, "t": tenant_id},
            )
        return TenantResult(str(tenant_id), True, version, seconds=time.perf_counter() - started)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        async with db.platform_session() as session:
            await session.execute(
                text(
                    "UPDATE platform.tenant_registry SET migration_status = 'failed', "
                    "migration_error = :e, updated_at = now() WHERE tenant_id = :t"
                ),
                {"e": error, "t": tenant_id},
            )
        return TenantResult(str(tenant_id), False, None, error, time.perf_counter() - started)


async def _migrate_sequential(
    settings: PlatformSettings, track: Track, tenant_ids: Sequence[uuid.UUID], target: str
) -> list[TenantResult]:
    db = Database(settings, pool_size=1, max_overflow=0)
    try:
        return [await _migrate_one(db, t, track, target, settings) for t in tenant_ids]
    finally:
        await db.dispose()


def _worker_entry(
    settings_json: str, track: Track, tenant_ids: list[str], target: str
) -> list[TenantResult]:
    settings = PlatformSettings.model_validate_json(settings_json)
    ids = [uuid.UUID(t) for t in tenant_ids]
    return asyncio.run(_migrate_sequential(settings, track, ids, target))


async def migrate_tenants(
    settings: PlatformSettings,
    track: Track,
    *,
    concurrency: int | None = None,
    target: str = "heads",
    chunk_size: int = 25,
) -> RunReport:
    """Upgrade every lagging tenant schema of one service; never stops at a failure."""
    started = time.perf_counter()
    head = track.head
    db = Database(settings, pool_size=1, max_overflow=0)
    try:
        pending = await lagging_tenants(db, head)
    finally:
        await db.dispose()
    report = RunReport(settings.service_name, head)
    workers = max(1, concurrency or settings.migrate_concurrency)
    if not pending:
        report.seconds = time.perf_counter() - started
        return report
    if workers == 1 or len(pending) <= chunk_size:
        report.results = await _migrate_sequential(settings, track, pending, target)
    else:
        chunks = [
            [str(t) for t in pending[i : i + chunk_size]]
            for i in range(0, len(pending), chunk_size)
        ]
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        settings_json = settings.model_dump_json()
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [
                loop.run_in_executor(pool, _worker_entry, settings_json, track, chunk, target)
                for chunk in chunks
            ]
            for chunk_results in await asyncio.gather(*futures):
                report.results.extend(chunk_results)
    report.seconds = time.perf_counter() - started
    return report
