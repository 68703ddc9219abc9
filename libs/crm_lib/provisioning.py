"""Tenant lifecycle in every service: provision and drop this service's tenant schema.

Identity publishes ``identity.tenant.created`` / ``identity.tenant.deletion_requested``;
each service answers with ``<service>.tenant.provisioned`` (or
``.provisioning_failed`` with the reason) and ``<service>.tenant.deprovisioned``.
Handlers are idempotent: a retried or duplicated request re-reports the current
state without touching the schema again, and never touches another tenant.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from crm_lib.events import EventContext, Subscription
from crm_lib.migrations import ServiceSchema, provision_schema
from crm_lib.platform_tables import TenantRegistryRow
from crm_lib.telemetry import get_logger
from crm_lib.tenancy import bind_tenant, quote_ident, tenant_schema

log = get_logger("crm.provisioning")

TENANT_CREATED = "identity.tenant.created"
TENANT_DELETION_REQUESTED = "identity.tenant.deletion_requested"
TENANT_STATUS_CHANGED = "identity.tenant.status_changed"


async def _upsert_registry(
    ctx: EventContext, tenant_id: uuid.UUID, status: str, **values: object
) -> None:
    row = {
        "tenant_id": tenant_id,
        "slug": ctx.event.data.get("slug"),
        "status": status,
        "schema_name": tenant_schema(tenant_id),
        **values,
    }
    stmt = pg_insert(TenantRegistryRow).values(**row)
    update_cols = {k: stmt.excluded[k] for k in row if k not in ("tenant_id", "schema_name")}
    update_cols["updated_at"] = text("now()")  # type: ignore[assignment]
    await ctx.session.execute(
        stmt.on_conflict_do_update(index_elements=["tenant_id"], set_=update_cols)
    )


def lifecycle_subscription(service: str, schema: ServiceSchema) -> Subscription:
    async def handle(ctx: EventContext) -> None:
        tenant_id = ctx.event.tenant_id
        if ctx.event.type == TENANT_CREATED:
            await _provision(ctx, service, schema, tenant_id)
        elif ctx.event.type == TENANT_DELETION_REQUESTED:
            await _deprovision(ctx, service, tenant_id)
        elif ctx.event.type == TENANT_STATUS_CHANGED:
            await ctx.session.execute(
                update(TenantRegistryRow)
                .where(TenantRegistryRow.tenant_id == tenant_id)
                .where(TenantRegistryRow.status != "deleted")
                .values(status=str(ctx.event.data["status"]), updated_at=text("now()"))
            )

    return Subscription(
        name="tenant-lifecycle",
        event_types=[TENANT_CREATED, TENANT_DELETION_REQUESTED, TENANT_STATUS_CHANGED],
        handler=handle,
        scope="platform",
    )


async def _provision(
    ctx: EventContext, service: str, schema: ServiceSchema, tenant_id: uuid.UUID
) -> None:
    existing = await ctx.session.get(TenantRegistryRow, tenant_id)
    if existing is not None and existing.status == "deleted":
        await ctx.emit(
            f"{service}.tenant.provisioning_failed",
            {"service": service, "reason": "tenant was deleted"},
        )
        return
    savepoint = await ctx.session.begin_nested()
    try:
        conn = await bind_tenant(await ctx.session.connection(), tenant_id)
        version = await provision_schema(conn, tenant_id, schema)
        await savepoint.commit()
    except Exception as exc:  # report it: the tenant must show why it is stuck
        await savepoint.rollback()
        reason = f"{type(exc).__name__}: {exc}"[:1000]
        log.error("tenant.provision_failed", service=service, tenant=str(tenant_id), error=reason)
        await _upsert_registry(ctx, tenant_id, "provisioning_failed", migration_error=reason)
        await ctx.emit(
            f"{service}.tenant.provisioning_failed", {"service": service, "reason": reason}
        )
        return
    await _upsert_registry(
        ctx,
        tenant_id,
        "active",
        schema_version=version,
        migration_status="ok",
        migration_error=None,
    )
    await ctx.emit(f"{service}.tenant.provisioned", {"service": service, "schema_version": version})


async def _deprovision(ctx: EventContext, service: str, tenant_id: uuid.UUID) -> None:
    schema = tenant_schema(tenant_id)
    await ctx.session.execute(text("SELECT set_config('lock_timeout', '10s', true)"))
    await ctx.session.execute(text(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE"))
    await _upsert_registry(ctx, tenant_id, "deleted", schema_version=None)
    await ctx.emit(f"{service}.tenant.deprovisioned", {"service": service})
