"""Contacts: search and list performance indexes.

Revision ID: con_t0005
Revises: con_t0004
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401
from sqlalchemy.dialects import postgresql  # noqa: F401

revision = "con_t0005"
down_revision = "con_t0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
