"""Support: merge re-points of ticket requesters; requester index.

Revision ID: sup_t0002
Revises: sup_t0001
"""

import sqlalchemy as sa
from alembic import op

revision = "sup_t0002"
down_revision = "sup_t0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merge_repoints",
        sa.Column("merge_id", sa.UUID(), nullable=False),
        sa.Column("ticket_id", sa.UUID(), nullable=False),
        sa.Column("old_contact_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("merge_id", "ticket_id", name=op.f("pk_merge_repoints")),
    )
    op.create_index(
        "ix_tickets_requester_contact_id", "tickets", ["requester_contact_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_requester_contact_id", table_name="tickets")
    op.drop_table("merge_repoints")
