"""All queries on the tenant registry."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import Tenant, TenantServiceState
from crm_lib.revocation import publish_tenant_status_on_commit


class TenantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(
        self, tenant_id: uuid.UUID, slug: str, name: str, plan: str, seats: int
    ) -> Tenant | None:
        """Insert a tenant; ``None`` if the slug is taken (no aborted transaction)."""
        row = (
            await self.session.execute(
                pg_insert(Tenant)
                .values(
                    id=tenant_id,
                    slug=slug,
                    name=name,
                    plan=plan,
                    seats=seats,
                    status="provisioning",
                )
                .on_conflict_do_nothing(index_elements=["slug"])
                .returning(Tenant)
            )
        ).scalar_one_or_none()
        if row is not None:
            publish_tenant_status_on_commit(self.session, tenant_id, "provisioning")
        return row

    async def get(self, tenant_id: uuid.UUID, *, lock: bool = False) -> Tenant | None:
        stmt = select(Tenant).where(Tenant.id == tenant_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_by_slug(self, slug: str) -> Tenant | None:
        return (
            await self.session.execute(select(Tenant).where(Tenant.slug == slug))
        ).scalar_one_or_none()

    async def statuses(self) -> dict[uuid.UUID, str]:
        """Every tenant's status (one pass over the registry)."""
        rows = (await self.session.execute(select(Tenant.id, Tenant.status))).all()
        return {row[0]: row[1] for row in rows}

    async def taken_slugs(self, prefix: str) -> set[str]:
        """The slugs that start with ``prefix``."""
        return set(
            (
                await self.session.execute(
                    select(Tenant.slug).where(Tenant.slug.like(f"{prefix}%"))
                )
            ).scalars()
        )

    async def page(self, limit: int, after: uuid.UUID | None, status: str | None) -> list[Tenant]:
        stmt = select(Tenant).order_by(Tenant.id).limit(limit)
        if after is not None:
            stmt = stmt.where(Tenant.id > after)
        if status is not None:
            stmt = stmt.where(Tenant.status == status)
        return list((await self.session.execute(stmt)).scalars())

    async def set_status(
        self,
        tenant_id: uuid.UUID,
        status: str,
        reason: str | None = None,
        *,
        stamp: str | None = None,
        **values: object,
    ) -> None:
        """Set the status (and ``values``); ``stamp`` names a column set to the database's
        now (``activated_at``, ``deleted_at``)."""
        if stamp is not None:
            values[stamp] = func.now()
        await self.session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id)
            .values(
                status=status,
                status_reason=reason,
                updated_at=func.now(),
                version=Tenant.version + 1,
                **values,
            )
        )
        # every service reads the status on each request (crm_lib.revocation)
        publish_tenant_status_on_commit(self.session, tenant_id, status)

    async def service_states(self, tenant_id: uuid.UUID) -> list[TenantServiceState]:
        return list(
            (
                await self.session.execute(
                    select(TenantServiceState)
                    .where(TenantServiceState.tenant_id == tenant_id)
                    .order_by(TenantServiceState.service)
                )
            ).scalars()
        )

    async def record_service_state(
        self, tenant_id: uuid.UUID, service: str, state: str, detail: str | None
    ) -> None:
        stmt = pg_insert(TenantServiceState).values(
            tenant_id=tenant_id, service=service, state=state, detail=detail
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant_id", "service"],
                set_={"state": state, "detail": detail, "updated_at": func.now()},
            )
        )

    async def reset_service_states(self, tenant_id: uuid.UUID, state: str) -> None:
        await self.session.execute(
            update(TenantServiceState)
            .where(TenantServiceState.tenant_id == tenant_id)
            .where(TenantServiceState.state != "provisioned")
            .values(state=state, detail=None, updated_at=func.now())
        )
