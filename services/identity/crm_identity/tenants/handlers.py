"""Saga consumer: every service's provisioning and deletion reports."""

from __future__ import annotations

from crm_identity.settings import IdentitySettings
from crm_identity.tenants.service import TenantService
from crm_lib.events import EventContext, Subscription

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
