"""Bench track r2: a column + index on contacts (the migration being measured).

Revision ID: bench_m2
Revises: (contacts' current tenant head)
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
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


revision = "bench_m2"
down_revision = _contacts_head()
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("bench_score", sa.Integer(), nullable=True))
    op.create_index("ix_contacts_bench_score", "contacts", ["bench_score"])


def downgrade() -> None:
    op.drop_index("ix_contacts_bench_score", table_name="contacts")
    op.drop_column("contacts", "bench_score")
