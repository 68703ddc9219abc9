"""Sales: contact cards (read model of contacts) and merge re-points.

Revision ID: sal_t0002
Revises: sal_t0001
"""

import sqlalchemy as sa
from alembic import op

revision = "sal_t0002"
down_revision = "sal_t0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_cards",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("company_id", sa.UUID(), nullable=True),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'active'"), nullable=False
        ),
        sa.Column("merged_into_id", sa.UUID(), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_cards")),
    )
    op.create_index("ix_contact_cards_company_id", "contact_cards", ["company_id"], unique=False)
    op.create_table(
        "merge_repoints",
        sa.Column("merge_id", sa.UUID(), nullable=False),
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("row_id", sa.UUID(), nullable=False),
        sa.Column("old_value", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("merge_id", "target", "row_id", name=op.f("pk_merge_repoints")),
    )


def downgrade() -> None:
    op.drop_table("merge_repoints")
    op.drop_index("ix_contact_cards_company_id", table_name="contact_cards")
    op.drop_table("contact_cards")
