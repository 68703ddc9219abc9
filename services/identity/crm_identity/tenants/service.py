"""Tenant lifecycle rules: creation, the provisioning/deletion saga, retries.

Never commits: callers own the transaction (request or message edge).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.billing.repository import BillingRepository
from crm_identity.models import Tenant
from crm_identity.plans import PLANS, get_plan
from crm_identity.tenants import schemas
from crm_identity.tenants.repository import TenantRepository
from crm_identity.users.service import SeatPolicy, sees_seats
from crm_lib.auth import Principal
from crm_lib.events import emit
from crm_lib.http import ProblemError
from crm_lib.provisioning import (
    TENANT_CREATED,
    TENANT_DELETION_REQUESTED,
    TENANT_STATUS_CHANGED,
)

TENANT_ACTIVATED = "identity.tenant.activated"
TENANT_DELETED = "identity.tenant.deleted"

RESERVED_SLUGS = frozenset({"api", "www", "admin", "app", "internal", "platform", "public"})


def to_schema(tenant: Tenant, states: Sequence[object] = ()) -> schemas.Tenant:
    return schemas.Tenant(
        id=tenant.id,
        slug=tenant.slug,
        name=tenant.name,
        status=tenant.status,
        status_reason=tenant.status_reason,
        plan=tenant.plan,
        created_at=tenant.created_at,
        updated_at=tenant.updated_at,
        activated_at=tenant.activated_at,
        deleted_at=tenant.deleted_at,
        services=[
            schemas.ServiceState(
                service=s.service,  # type: ignore[attr-defined]
                state=s.state,  # type: ignore[attr-defined]
                detail=s.detail,  # type: ignore[attr-defined]
                updated_at=s.updated_at,  # type: ignore[attr-defined]
            )
            for s in states
        ],
    )


class TenantService:
    def __init__(self, session: AsyncSession, provisioning_services: Sequence[str]) -> None:
        self.session = session
        self.repo = TenantRepository(session)
        self.required = tuple(provisioning_services)

    async def create(
        self,
        data: schemas.TenantCreate,
        *,
        actor: str | None = None,
        tenant_id: uuid.UUID | None = None,
        seats: int | None = None,
        trial_days: int = 0,
    ) -> Tenant:
        """Register a tenant; a paid plan with ``trial_days`` starts a trial (billing)."""
        if data.slug in RESERVED_SLUGS:
            raise ProblemError(
                422,
                f"The slug '{data.slug}' is reserved.",
                title="Validation failed",
                errors=[{"field": "slug", "message": "reserved"}],
            )
        tenant = await self.repo.insert(
            tenant_id or uuid.uuid4(),
            data.slug,
            data.name.strip(),
            data.plan,
            seats if seats is not None else get_plan(data.plan).default_seats,
        )
        if tenant is None:
            raise ProblemError(
                409, f"A tenant with the slug '{data.slug}' already exists.", title="Conflict"
            )
        for service in self.required:
            await self.repo.record_service_state(tenant.id, service, "pending", None)
        trial_ends_at = None
        if trial_days > 0 and get_plan(tenant.plan).paid:
            trial_ends_at = datetime.now(UTC) + timedelta(days=trial_days)
        await BillingRepository(self.session).create_account(tenant.id, trial_ends_at=trial_ends_at)
        await emit(
            self.session,
            TENANT_CREATED,
            tenant.id,
            {"slug": tenant.slug, "name": tenant.name, "plan": tenant.plan},
            actor=actor,
        )
        return tenant

    async def get(self, tenant_id: uuid.UUID) -> schemas.Tenant:
        tenant = await self.repo.get(tenant_id)
        if tenant is None:
            raise ProblemError(404, "No such tenant.")
        return to_schema(tenant, await self.repo.service_states(tenant_id))

    async def current(self, principal: Principal) -> schemas.CurrentTenant:
        """The caller's tenant and plan; seat usage only for those who may see it."""
        tenant = await self.get(principal.tenant_id)
        seats = (
            await SeatPolicy(self.session, principal.tenant_id).summary()
            if sees_seats(principal)
            else None
        )
        return schemas.CurrentTenant(tenant, seats, PLANS.get(tenant.plan, PLANS["free"]))

    async def retry_provisioning(self, tenant_id: uuid.UUID, *, actor: str | None = None) -> Tenant:
        tenant = await self.repo.get(tenant_id, lock=True)
        if tenant is None:
            raise ProblemError(404, "No such tenant.")
        if tenant.status not in ("provisioning", "provisioning_failed"):
            raise ProblemError(409, f"Tenant is {tenant.status}; nothing to retry.")
        await self.repo.set_status(tenant_id, "provisioning")
        await self.repo.reset_service_states(tenant_id, "pending")
        # Services are idempotent: those already done re-report, the others try again.
        await emit(
            self.session,
            TENANT_CREATED,
            tenant.id,
            {"slug": tenant.slug, "name": tenant.name, "plan": tenant.plan, "retry": True},
            actor=actor,
        )
        return tenant

    async def request_deletion(self, tenant_id: uuid.UUID, *, actor: str | None = None) -> Tenant:
        tenant = await self.repo.get(tenant_id, lock=True)
        if tenant is None:
            raise ProblemError(404, "No such tenant.")
        if tenant.status == "deleted":
            raise ProblemError(409, "Tenant is already deleted.")
        await self.repo.set_status(tenant_id, "deleting")
        for service in self.required:
            await self.repo.record_service_state(tenant.id, service, "deleting", None)
        await emit(
            self.session, TENANT_DELETION_REQUESTED, tenant.id, {"slug": tenant.slug}, actor=actor
        )
        return tenant

    async def request_own_deletion(self, principal: Principal, confirm_slug: str) -> Tenant:
        """An owner deletes their own tenant, confirming it by its slug."""
        if "owner" not in principal.roles:
            raise ProblemError(403, "Only an owner can delete the tenant.")
        tenant = await self.get(principal.tenant_id)
        if confirm_slug != tenant.slug:
            raise ProblemError(
                422,
                "confirm_slug must equal the tenant's slug.",
                title="Validation failed",
                errors=[{"field": "confirm_slug", "message": "does not match"}],
            )
        return await self.request_deletion(principal.tenant_id, actor=principal.subject)

    async def change_status(
        self, tenant: Tenant, status: str, reason: str | None = None, **values: Any
    ) -> None:
        """Move a tenant (the caller holds its row lock) and tell every service."""
        await self._move(tenant, status, reason, **values)

    async def _move(
        self,
        tenant: Tenant,
        status: str,
        reason: str | None = None,
        *,
        stamp: str | None = None,
        **values: Any,
    ) -> None:
        """Change a tenant's status and tell every service (their registry replicas)."""
        await self.repo.set_status(tenant.id, status, reason, stamp=stamp, **values)
        await emit(
            self.session,
            TENANT_STATUS_CHANGED,
            tenant.id,
            {"status": status, "reason": reason, "previous": tenant.status},
        )

    async def record_report(
        self, tenant_id: uuid.UUID, service: str, outcome: str, detail: str | None
    ) -> None:
        """Apply one service's saga report; moves the tenant when all have answered."""
        tenant = await self.repo.get(tenant_id, lock=True)
        if tenant is None or service not in self.required:
            return
        await self.repo.record_service_state(tenant_id, service, outcome, detail)
        states = {s.service: s.state for s in await self.repo.service_states(tenant_id)}
        if outcome == "provisioning_failed" and tenant.status == "provisioning":
            await self._move(tenant, "provisioning_failed", f"{service}: {detail}")
        elif outcome == "provisioned" and tenant.status in ("provisioning", "provisioning_failed"):
            if all(states.get(s) == "provisioned" for s in self.required):
                # A paid-plan sign-up on trial is ``trialing`` (billing), the others active.
                account = await BillingRepository(self.session).account(tenant_id)
                trial = account.trial_ends_at is not None and account.subscription_status in (
                    "none",
                    "trialing",
                )
                status = "trialing" if trial else "active"
                await self._move(tenant, status, None, stamp="activated_at")
                await emit(self.session, TENANT_ACTIVATED, tenant_id, {"slug": tenant.slug})
        elif outcome == "deprovisioned" and tenant.status == "deleting":
            if all(states.get(s) == "deprovisioned" for s in self.required):
                await self.repo.set_status(tenant_id, "deleted", None, stamp="deleted_at")
                await emit(self.session, TENANT_DELETED, tenant_id, {"slug": tenant.slug})
