"""All queries of billing (platform tables; callable from tenant or platform sessions)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.billing.models import BillingAccount, StripeWebhookEvent
from crm_identity.models import Tenant, User


class BillingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_tenant(self, tenant_id: uuid.UUID) -> Tenant | None:
        """The tenant's registry row, locked: seat, plan and status changes serialise on it."""
        return (
            await self.session.execute(
                select(Tenant).where(Tenant.id == tenant_id).with_for_update()
            )
        ).scalar_one_or_none()

    async def create_account(
        self, tenant_id: uuid.UUID, *, trial_ends_at: datetime | None = None
    ) -> None:
        await self.session.execute(
            pg_insert(BillingAccount)
            .values(tenant_id=tenant_id, trial_ends_at=trial_ends_at)
            .on_conflict_do_nothing(index_elements=["tenant_id"])
        )

    async def account(self, tenant_id: uuid.UUID, *, lock: bool = False) -> BillingAccount:
        """The tenant's account (created on first use for tenants older than billing)."""
        stmt = select(BillingAccount).where(BillingAccount.tenant_id == tenant_id)
        if lock:
            stmt = stmt.with_for_update()
        found = (await self.session.execute(stmt)).scalar_one_or_none()
        if found is None:
            await self.create_account(tenant_id)
            found = (await self.session.execute(stmt)).scalar_one()
        return found

    async def tenant_for_customer(self, customer_id: str) -> uuid.UUID | None:
        return (
            await self.session.execute(
                select(BillingAccount.tenant_id).where(
                    BillingAccount.stripe_customer_id == customer_id
                )
            )
        ).scalar_one_or_none()

    async def tenant_for_subscription(self, subscription_id: str) -> uuid.UUID | None:
        return (
            await self.session.execute(
                select(BillingAccount.tenant_id).where(
                    BillingAccount.stripe_subscription_id == subscription_id
                )
            )
        ).scalar_one_or_none()

    async def update_account(self, tenant_id: uuid.UUID, **values: Any) -> BillingAccount:
        return (
            await self.session.execute(
                update(BillingAccount)
                .where(BillingAccount.tenant_id == tenant_id)
                .values(updated_at=func.now(), **values)
                .returning(BillingAccount)
                .execution_options(populate_existing=True)
            )
        ).scalar_one()

    async def update_tenant(self, tenant_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id)
            .values(updated_at=func.now(), version=Tenant.version + 1, **values)
        )

    async def record_webhook_event(
        self, event_id: str, event_type: str, tenant_id: uuid.UUID | None, created: int
    ) -> bool:
        """``True`` the first time an event id is seen, ``False`` for a duplicate."""
        inserted = (
            await self.session.execute(
                pg_insert(StripeWebhookEvent)
                .values(event_id=event_id, type=event_type, tenant_id=tenant_id, created=created)
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(StripeWebhookEvent.event_id)
            )
        ).scalar_one_or_none()
        return inserted is not None

    async def owner_emails(self) -> list[str]:
        """Active owners of the session's tenant (tenant-bound session)."""
        return list(
            (
                await self.session.execute(
                    select(User.email)
                    .where(User.status == "active", User.roles.any("owner"))
                    .order_by(User.email)
                )
            ).scalars()
        )

    async def active_users(self) -> int:
        return int(
            (
                await self.session.execute(select(func.count()).where(User.status == "active"))
            ).scalar_one()
        )

    async def due_for_sweep(self, now: datetime, limit: int = 500) -> list[uuid.UUID]:
        """Tenants whose billing clock may have run out (the sweeper re-checks each)."""
        stmt = (
            select(BillingAccount.tenant_id)
            .join(Tenant, Tenant.id == BillingAccount.tenant_id)
            .where(
                or_(
                    Tenant.status.in_(("past_due", "suspended", "pending_deletion")),
                    (Tenant.status == "trialing") & (BillingAccount.trial_ends_at.is_not(None)),
                    (BillingAccount.cancel_at_period_end.is_(True))
                    & (BillingAccount.current_period_end <= now),
                )
            )
            .order_by(BillingAccount.tenant_id)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())
