"""Contacts: members carry their login email (import owner columns name users by it).

Revision ID: con_t0007
Revises: con_t0006
"""

import sqlalchemy as sa
from alembic import op

revision = "con_t0007"
down_revision = "con_t0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("members", sa.Column("email", sa.String(length=320), nullable=True))


def downgrade() -> None:
    op.drop_column("members", "email")
