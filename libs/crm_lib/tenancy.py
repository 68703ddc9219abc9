"""Tenant scoping: the one place that turns a tenant into a schema and a session.

Every request, message and job gets a *fresh* ``AsyncSession`` bound to exactly
one tenant schema through ``schema_translate_map`` (tables declared without a
schema are rendered as ``"tenant_<hex>".<table>``). As a second guard each
transaction starts with a transaction-local ``search_path`` naming only that
schema, so hand-written ``text()`` SQL with unqualified names resolves inside
the tenant schema or fails; it never falls back to ``public`` or another tenant.
Nothing is set at session level, so a pooled connection carries no tenant
state once its transaction ends.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.schema import MetaData

from crm_lib.settings import PlatformSettings
from crm_lib.telemetry import get_logger

_log = get_logger("crm.tenancy")

PLATFORM_SCHEMA = "platform"
_TENANT_SCHEMA_PREFIX = "tenant_"
_TENANT_SCHEMA_RE = re.compile(r"^tenant_[0-9a-f]{32}$")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def tenant_metadata() -> MetaData:
    """A service's per-tenant metadata: tables without a schema, routed per session.

    Each service builds its own (``class Base(DeclarativeBase): metadata =
    tenant_metadata()``) so services loaded in one process never share tables.
    """
    return MetaData(naming_convention=NAMING_CONVENTION)


def platform_metadata() -> MetaData:
    """A service's own metadata for tables in the shared ``platform`` schema."""
    return MetaData(schema=PLATFORM_SCHEMA, naming_convention=NAMING_CONVENTION)


class PlatformBase(DeclarativeBase):
    """Base for tables in the shared ``platform`` schema of a service database."""

    metadata = platform_metadata()


def parse_tenant_id(value: uuid.UUID | str) -> uuid.UUID:
    """A tenant id as UUID; raises ValueError for anything else (dots, wildcards, SQL)."""
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


def tenant_schema(tenant_id: uuid.UUID | str) -> str:
    """The schema name of a tenant. The only function that derives schema names."""
    return f"{_TENANT_SCHEMA_PREFIX}{parse_tenant_id(tenant_id).hex}"


def is_tenant_schema(name: str) -> bool:
    return bool(_TENANT_SCHEMA_RE.match(name))


def tenant_translate_map(tenant_id: uuid.UUID | str) -> dict[str | None, str]:
    return {None: tenant_schema(tenant_id)}


def quote_ident(name: str) -> str:
    if not (is_tenant_schema(name) or name == PLATFORM_SCHEMA):
        raise ValueError(f"refusing to quote unexpected schema name {name!r}")
    return f'"{name}"'


_SET_SEARCH_PATH = text("SELECT set_config('search_path', :path, true)")


def _guard_search_path(session: AsyncSession, path: str) -> None:
    """Pin every transaction of ``session`` to ``path`` (transaction-local)."""

    @event.listens_for(session.sync_session, "after_begin")
    def _after_begin(_session: Any, _transaction: Any, connection: Any) -> None:
        connection.execute(_SET_SEARCH_PATH, {"path": path})


class Database:
    """One engine (one pool) per service database, shared by every tenant."""

    def __init__(self, settings: PlatformSettings, *, url: str | None = None, **engine_kw: Any):
        self.settings = settings
        kw: dict[str, Any] = {
            "pool_size": settings.database_pool_size,
            "max_overflow": settings.database_max_overflow,
            "pool_recycle": settings.database_pool_recycle_seconds,
            "pool_reset_on_return": "rollback",
            "connect_args": {
                "server_settings": {
                    "application_name": f"crm-{settings.service_name}",
                    "statement_timeout": str(settings.database_statement_timeout_ms),
                }
            },
        }
        kw.update(engine_kw)
        self.engine: AsyncEngine = create_async_engine(url or settings.async_database_url, **kw)
        #: Run after each ``tenant_session``/``platform_session`` commit with the session's
        #: ``info`` (see ``_run_commit_hooks``); ``ServiceRuntime`` registers the revocation one.
        self.commit_hooks: list[CommitHook] = []

    async def dispose(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def tenant_session(self, tenant_id: uuid.UUID | str) -> AsyncIterator[AsyncSession]:
        """A fresh session for one tenant, one transaction, committed on clean exit."""
        schema = tenant_schema(tenant_id)
        bind = self.engine.execution_options(schema_translate_map={None: schema})
        async with AsyncSession(bind, expire_on_commit=False) as session:
            _guard_search_path(session, quote_ident(schema))
            async with session.begin():
                yield session
            await _run_commit_hooks(self.commit_hooks, session)

    @asynccontextmanager
    async def platform_session(self) -> AsyncIterator[AsyncSession]:
        """A session for platform tables only; unqualified names resolve in ``platform``."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            _guard_search_path(session, quote_ident(PLATFORM_SCHEMA))
            async with session.begin():
                yield session
            await _run_commit_hooks(self.commit_hooks, session)

    @asynccontextmanager
    async def tenant_connection(self, tenant_id: uuid.UUID | str) -> AsyncIterator[AsyncConnection]:
        """A connection in one transaction bound to one tenant (DDL, migrations)."""
        schema = tenant_schema(tenant_id)
        async with self.engine.begin() as conn:
            conn = await conn.execution_options(schema_translate_map={None: schema})
            await conn.execute(_SET_SEARCH_PATH, {"path": quote_ident(schema)})
            yield conn


CommitHook = Callable[[dict[str, Any]], Awaitable[None]]


async def _run_commit_hooks(hooks: list[CommitHook], session: AsyncSession) -> None:
    """Hand a committed session's ``info`` to each hook (never on rollback).

    Hooks carry out side effects recorded during the transaction that must not precede
    the commit, e.g. revocation markers in Redis (``crm_lib.revocation``): a token minted
    between such a write and the commit would carry the old rights. A failing hook is
    logged, never raised: the change itself is already durable.
    """
    if not hooks or not session.info:
        return
    for hook in hooks:
        try:
            await hook(session.info)
        except Exception as exc:
            _log.warning("tenancy.commit_hook_failed", error=type(exc).__name__)


async def ensure_database(settings: PlatformSettings) -> None:
    """Create this service's database on the server if it does not exist yet."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(settings.server_database_url)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database or "postgres",
    )
    try:
        name = settings.effective_database_name
        if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", name):
            raise ValueError(f"invalid database name {name!r}")
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await conn.close()


async def bind_tenant(conn: AsyncConnection, tenant_id: uuid.UUID | str) -> AsyncConnection:
    """Point an open connection (inside its transaction) at one tenant's schema."""
    schema = tenant_schema(tenant_id)
    conn = await conn.execution_options(schema_translate_map={None: schema})
    await conn.execute(_SET_SEARCH_PATH, {"path": quote_ident(schema)})
    return conn


def tenant_key(tenant_id: uuid.UUID | str, namespace: str, *parts: str) -> str:
    """A Redis key inside one tenant's key space (rate limits, idempotency, caches)."""
    if not re.match(r"^[a-z][a-z0-9_-]*$", namespace):
        raise ValueError(f"bad key namespace {namespace!r}")
    tail = ":".join(p.replace(":", "%3A") for p in parts)
    base = f"crm:t:{parse_tenant_id(tenant_id)}:{namespace}"
    return f"{base}:{tail}" if tail else base
