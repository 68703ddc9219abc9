"""Contacts: search and list performance indexes.

Revision ID: con_t0005
Revises: con_t0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql  # noqa: F401

revision = "con_t0005"
down_revision = "con_t0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The default list order (``-updated_at``: updated_at DESC NULLS LAST, id ASC) as an
    # index, so a first page reads 50 index entries instead of sorting the whole table.
    op.create_index(
        "ix_contacts_updated_desc_id",
        "contacts",
        [sa.text("updated_at DESC NULLS LAST"), "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_updated_desc_id", table_name="contacts")
