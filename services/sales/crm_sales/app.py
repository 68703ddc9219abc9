"""The sales service: definition, app factory and worker entry point."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar

from crm_lib.events import Subscription
from crm_lib.migrations import ServiceSchema, Track
from crm_lib.service import ServiceDefinition, ServiceRuntime, build_app
from crm_sales.contact_refs.handlers import contact_refs_subscription
from crm_sales.contact_refs.privacy import sales_privacy_subscription
from crm_sales.models import TenantBase

MIGRATIONS = Path(__file__).parent / "migrations"

SCHEMA = ServiceSchema(
    service="sales",
    tenant_metadata=TenantBase.metadata,
    tenant_track=Track("sales-tenant", MIGRATIONS / "tenant", per_tenant=True),
)


def subscriptions(_runtime: ServiceRuntime) -> list[Subscription]:
    return [contact_refs_subscription(), sales_privacy_subscription()]


SERVICE = ServiceDefinition(
    name="sales", schema=SCHEMA, route_handlers=[], subscriptions=subscriptions
)


def create_app() -> Litestar:
    return build_app(SERVICE)
