"""Contacts: merges and GDPR requests.

Revision ID: con_t0004
Revises: con_t0003
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401
from sqlalchemy.dialects import postgresql  # noqa: F401

revision = "con_t0004"
down_revision = "con_t0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
