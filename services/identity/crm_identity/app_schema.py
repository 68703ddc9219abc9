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
    # Credentials never leave identity, not even as hashes.
    export_exclude=frozenset(
        {
            "refresh_tokens",
            "users.password_hash",
            "users.failed_logins",
            "users.locked_until",
            "api_keys.key_hash",
            "oauth_clients.secret_hash",
            "invitations.token_hash",
        }
    ),
)
