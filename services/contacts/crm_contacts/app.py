"""The contacts service: definition, app factory and worker entry point."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar

from crm_contacts.models import TenantBase
from crm_lib.migrations import ServiceSchema, Track
from crm_lib.service import ServiceDefinition, build_app

MIGRATIONS = Path(__file__).parent / "migrations"

SCHEMA = ServiceSchema(
    service="contacts",
    tenant_metadata=TenantBase.metadata,
    tenant_track=Track("contacts-tenant", MIGRATIONS / "tenant", per_tenant=True),
)

SERVICE = ServiceDefinition(name="contacts", schema=SCHEMA, route_handlers=[])


def create_app() -> Litestar:
    return build_app(SERVICE)
