"""The identity service: definition, app factory and worker entry point."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar

from crm_identity.models import TenantBase
from crm_identity.settings import IdentitySettings
from crm_identity.tenants.controllers import TenantController
from crm_identity.tenants.handlers import saga_subscription
from crm_lib.migrations import ServiceSchema, Track
from crm_lib.service import ServiceDefinition, build_app

MIGRATIONS = Path(__file__).parent / "migrations"

SCHEMA = ServiceSchema(
    service="identity",
    tenant_metadata=TenantBase.metadata,
    tenant_track=Track("identity-tenant", MIGRATIONS / "tenant", per_tenant=True),
    platform_track=Track("identity-platform", MIGRATIONS / "platform"),
)

SERVICE = ServiceDefinition(
    name="identity",
    schema=SCHEMA,
    route_handlers=[TenantController],
    subscriptions=lambda runtime: [saga_subscription(runtime.settings)],  # type: ignore[arg-type]
    settings_class=IdentitySettings,
)


def create_app() -> Litestar:
    return build_app(SERVICE)
