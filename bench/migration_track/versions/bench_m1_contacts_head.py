"""Bench track r1: the contacts tenant schema at its real chain head.

Revision ID: (contacts' current tenant head, computed)
Revises:

The migrations benchmark provisions schemas with the contacts fast path
(`provision_schema(crm_contacts.app.SCHEMA)`: `create_all` + stamp contacts' head), so
this revision carries contacts' head id and, if ever replayed, builds the same tables
from the same metadata. Alembic needs a whole chain in one script directory; the bench
track copies nothing from contacts' directory. Like real revision files it imports
no application code at load time (the runner's worker processes load it per chunk).
"""

import importlib.util
from pathlib import Path

from alembic import op
from alembic.script import ScriptDirectory


def _contacts_head() -> str:
    """Contacts' current tenant head, read from its script directory (no app import)."""
    spec = importlib.util.find_spec("crm_contacts")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    head = ScriptDirectory(str(root / "migrations" / "tenant")).get_current_head()
    assert head is not None
    return head


revision = _contacts_head()
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    from crm_contacts.models import TenantBase  # only when replayed (never in the bench)

    TenantBase.metadata.create_all(op.get_bind())


def downgrade() -> None:
    from crm_contacts.models import TenantBase

    TenantBase.metadata.drop_all(op.get_bind())
