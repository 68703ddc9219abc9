"""The identity service: definition, app factory and worker entry point."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from litestar import Litestar

from crm_identity.app_schema import SCHEMA
from crm_identity.billing.controllers import BILLING_CONTROLLERS
from crm_identity.billing.handlers import (
    run_sweeper,
    seat_sync_subscription,
    stripe_event_subscription,
)
from crm_identity.components import identity_of
from crm_identity.exports.service import export_ready_subscription
from crm_identity.internal_controllers import InternalController, KeyRotationController
from crm_identity.mail.handlers import mail_subscription
from crm_identity.routes import PUBLIC_CONTROLLERS
from crm_identity.settings import IdentitySettings
from crm_identity.tenants.controllers import TenantController
from crm_identity.tenants.handlers import run_status_resync, saga_subscription
from crm_lib.events import Subscription
from crm_lib.service import ServiceDefinition, ServiceRuntime, build_app


def _subscriptions(runtime: ServiceRuntime) -> list[Subscription]:
    ident = identity_of(runtime)
    settings = ident.settings
    return [
        saga_subscription(settings),
        mail_subscription(settings),
        export_ready_subscription(settings.provisioning_services),
        # The provider is looked up per message, so it can be replaced as a whole.
        seat_sync_subscription(settings, lambda: identity_of(runtime).billing),
        stripe_event_subscription(settings, lambda: identity_of(runtime).billing),
    ]


def _background(runtime: ServiceRuntime) -> list[Callable[[asyncio.Event], Awaitable[None]]]:
    ident = identity_of(runtime)

    async def sweeper(stop: asyncio.Event) -> None:
        await run_sweeper(runtime.db, ident.settings, lambda: identity_of(runtime).billing, stop)

    async def status_resync(stop: asyncio.Event) -> None:
        await run_status_resync(runtime.db, lambda: runtime.redis, stop, 300.0)

    return [sweeper, status_resync]


SERVICE = ServiceDefinition(
    name="identity",
    schema=SCHEMA,
    route_handlers=[
        *PUBLIC_CONTROLLERS,
        *BILLING_CONTROLLERS,
        InternalController,
        KeyRotationController,
        TenantController,
    ],
    subscriptions=_subscriptions,
    background=_background,
    verifier_factory=lambda runtime: identity_of(runtime).verifier,
    settings_class=IdentitySettings,
)


def create_app() -> Litestar:
    return build_app(SERVICE)
