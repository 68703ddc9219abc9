"""The support service: definition, app factory and worker entry point."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar

from crm_lib.events import Subscription
from crm_lib.migrations import ServiceSchema, Track
from crm_lib.service import ServiceDefinition, ServiceRuntime, build_app
from crm_support.contact_refs.handlers import support_subscriptions
from crm_support.models import TenantBase

MIGRATIONS = Path(__file__).parent / "migrations"

SCHEMA = ServiceSchema(
    service="support",
    tenant_metadata=TenantBase.metadata,
    tenant_track=Track("support-tenant", MIGRATIONS / "tenant", per_tenant=True),
)


def subscriptions(_runtime: ServiceRuntime) -> list[Subscription]:
    return support_subscriptions()


SERVICE = ServiceDefinition(
    name="support", schema=SCHEMA, route_handlers=[], subscriptions=subscriptions
)


def create_app() -> Litestar:
    return build_app(SERVICE)
