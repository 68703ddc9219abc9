"""Billing consumers (identity worker): push seats/plans to Stripe, apply webhooks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from crm_identity.billing.gateway import BillingProvider
from crm_identity.billing.repository import BillingRepository
from crm_identity.billing.service import (
    PLAN_CHANGED,
    SEATS_CHANGED,
    STRIPE_EVENT,
    BillingService,
)
from crm_identity.settings import IdentitySettings
from crm_lib.events import EventContext, Subscription
from crm_lib.telemetry import describe_error, get_logger
from crm_lib.tenancy import Database

log = get_logger("crm.identity.billing")


def seat_sync_subscription(
    settings: IdentitySettings, provider: Callable[[], BillingProvider]
) -> Subscription:
    """Seat/plan changes -> the subscription item in Stripe (absolute quantity,
    deterministic idempotency key); a failure is retried by redelivery."""

    async def handle(ctx: EventContext) -> None:
        sequence = ctx.event.data.get("sequence")
        if not isinstance(sequence, int) or ctx.event.data.get("subscription_id") is None:
            return  # no subscription at the time: nothing to tell Stripe
        await BillingService(ctx.session, settings, provider()).sync_to_provider(
            ctx.event.tenant_id, sequence
        )

    return Subscription(
        name="billing-seat-sync",
        event_types=[SEATS_CHANGED, PLAN_CHANGED],
        handler=handle,
        scope="tenant",
    )


def stripe_event_subscription(
    settings: IdentitySettings, provider: Callable[[], BillingProvider]
) -> Subscription:
    """Verified, deduplicated Stripe webhooks, applied after re-reading Stripe."""

    async def handle(ctx: EventContext) -> None:
        data = ctx.event.data
        await BillingService(ctx.session, settings, provider()).handle_stripe_event(
            ctx.event.tenant_id,
            str(data["type"]),
            dict(data.get("object") or {}),
            int(data["created"]),
        )

    return Subscription(
        name="billing-stripe-events", event_types=[STRIPE_EVENT], handler=handle, scope="tenant"
    )


async def sweep_once(
    db: Database,
    settings: IdentitySettings,
    provider: BillingProvider,
    now: datetime | None = None,
    *,
    only: Collection[uuid.UUID] | None = None,
) -> dict[uuid.UUID, str]:
    """One pass of the billing clocks (trial end, grace, suspension, deletion) at ``now``.

    Each tenant is its own transaction; a failing tenant is logged and skipped.
    Returns the tenants that moved and their new status; ``only`` limits the pass to
    some tenants (tests, operators).
    """
    now = now or datetime.now(UTC)
    async with db.platform_session() as session:
        due = await BillingRepository(session).due_for_sweep(now)
    if only is not None:
        due = [t for t in due if t in only]
    moved: dict[uuid.UUID, str] = {}
    for tenant_id in due:
        try:
            async with db.tenant_session(tenant_id) as session:
                status = await BillingService(session, settings, provider, now=now).sweep_tenant(
                    tenant_id
                )
        except Exception as exc:  # one tenant never blocks the others
            log.warning("billing.sweep_failed", tenant=str(tenant_id), error=describe_error(exc))
            continue
        if status is not None:
            moved[tenant_id] = status
    return moved


async def run_sweeper(
    db: Database,
    settings: IdentitySettings,
    provider: Callable[[], BillingProvider],
    stop: asyncio.Event,
) -> None:
    """The worker's periodic sweeper."""
    while not stop.is_set():
        try:
            moved = await sweep_once(db, settings, provider())
            if moved:
                log.info("billing.swept", moved=len(moved))
        except Exception as exc:
            log.warning("billing.sweep_error", error=describe_error(exc))
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.billing_sweep_interval_seconds)
        except TimeoutError:
            pass
