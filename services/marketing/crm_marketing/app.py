"""The marketing service: definition, app factory and worker entry point."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar

from crm_lib.events import Subscription
from crm_lib.migrations import ServiceSchema, Track
from crm_lib.service import ServiceDefinition, ServiceRuntime, build_app
from crm_marketing.models import TenantBase
from crm_marketing.privacy import marketing_privacy_subscription

MIGRATIONS = Path(__file__).parent / "migrations"

SCHEMA = ServiceSchema(
    service="marketing",
    tenant_metadata=TenantBase.metadata,
    tenant_track=Track("marketing-tenant", MIGRATIONS / "tenant", per_tenant=True),
)


def subscriptions(_runtime: ServiceRuntime) -> list[Subscription]:
    return [marketing_privacy_subscription()]


SERVICE = ServiceDefinition(
    name="marketing", schema=SCHEMA, route_handlers=[], subscriptions=subscriptions
)


def create_app() -> Litestar:
    return build_app(SERVICE)
