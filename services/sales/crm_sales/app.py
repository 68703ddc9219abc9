"""The sales service: definition, app factory and worker entry point."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar

from crm_lib.migrations import ServiceSchema, Track
from crm_lib.service import ServiceDefinition, build_app
from crm_sales.models import TenantBase

MIGRATIONS = Path(__file__).parent / "migrations"

SCHEMA = ServiceSchema(
    service="sales",
    tenant_metadata=TenantBase.metadata,
    tenant_track=Track("sales-tenant", MIGRATIONS / "tenant", per_tenant=True),
)

SERVICE = ServiceDefinition(name="sales", schema=SCHEMA, route_handlers=[])


def create_app() -> Litestar:
    return build_app(SERVICE)
