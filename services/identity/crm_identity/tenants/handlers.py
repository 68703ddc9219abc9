"""Saga consumer: every service's provisioning and deletion reports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio import Redis

from crm_identity.settings import IdentitySettings
from crm_identity.tenants.repository import TenantRepository
from crm_identity.tenants.service import TenantService
from crm_lib.events import EventContext, Subscription
from crm_lib.revocation import publish_tenant_statuses
from crm_lib.telemetry import get_logger
from crm_lib.tenancy import Database

log = get_logger("crm.identity.tenants")

_OUTCOMES = {
    "provisioned": "provisioned",
    "provisioning_failed": "provisioning_failed",
    "deprovisioned": "deprovisioned",
}


def saga_subscription(settings: IdentitySettings) -> Subscription:
    async def handle(ctx: EventContext) -> None:
        service, _entity, action = ctx.event.type.split(".")
        outcome = _OUTCOMES[action]
        await TenantService(ctx.session, settings.provisioning_services).record_report(
            ctx.event.tenant_id, service, outcome, ctx.event.data.get("reason")
        )

    return Subscription(
        name="tenant-saga",
        event_types=[
            "*.tenant.provisioned",
            "*.tenant.provisioning_failed",
            "*.tenant.deprovisioned",
        ],
        handler=handle,
        scope="platform",
    )


async def resync_tenant_statuses(db: Database, redis: Redis) -> None:
    """Write every tenant's status from the registry to Redis (one pass)."""
    async with db.platform_session() as session:
        statuses = await TenantRepository(session).statuses()
    await publish_tenant_statuses(redis, statuses)


async def run_status_resync(
    db: Database, redis: Callable[[], Redis], stop: asyncio.Event, interval_seconds: float
) -> None:
    """Re-publish every tenant's status to Redis at start and then periodically.

    Statuses are written after each change commits (crm_lib.revocation); this heals what a
    Redis restart without persistence, or a write lost while Redis was away, left behind.
    """
    while not stop.is_set():
        try:
            await resync_tenant_statuses(db, redis())
        except Exception as exc:
            log.warning("tenants.status_resync_failed", error=type(exc).__name__)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
        except TimeoutError:
            pass
