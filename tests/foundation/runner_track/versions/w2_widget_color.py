"""Add widgets.color with an index (runner test track): an expand-only change.

Revision ID: w2
Revises: w1
"""

import sqlalchemy as sa
from alembic import op

revision = "w2"
down_revision = "w1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("widgets", sa.Column("color", sa.String(20), nullable=True))
    op.create_index("ix_widgets_color", "widgets", ["color"])


def downgrade() -> None:
    op.drop_index("ix_widgets_color", table_name="widgets")
    op.drop_column("widgets", "color")
