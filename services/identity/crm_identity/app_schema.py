"""Identity's database declaration (kept apart from app.py to avoid import cycles)."""

from __future__ import annotations

from pathlib import Path

from crm_identity.models import TenantBase
from crm_lib.migrations import ServiceSchema, Track

MIGRATIONS = Path(__file__).parent / "migrations"

SCHEMA = ServiceSchema(
    service="identity",
    tenant_metadata=TenantBase.metadata,
    tenant_track=Track("identity-tenant", MIGRATIONS / "tenant", per_tenant=True),
    platform_track=Track("identity-platform", MIGRATIONS / "platform"),
)
