"""Contacts: merges and GDPR requests.

Revision ID: con_t0004
Revises: con_t0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "con_t0004"
down_revision = "con_t0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merges",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("winner_id", sa.UUID(), nullable=False),
        sa.Column(
            "loser_ids",
            postgresql.ARRAY(sa.UUID()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.Column(
            "choices",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "changed_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "snapshot",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("winner_version", sa.Integer(), nullable=False),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'merged'"), nullable=False
        ),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undone_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merges")),
    )
    op.create_index("ix_merges_winner_id", "merges", ["winner_id"], unique=False)
    op.create_index(
        "ix_merges_loser_ids", "merges", ["loser_ids"], unique=False, postgresql_using="gin"
    )
    op.create_table(
        "gdpr_requests",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gdpr_requests")),
    )
    op.create_index(
        "ix_gdpr_requests_contact_id", "gdpr_requests", ["contact_id", "kind"], unique=False
    )
    op.create_index(
        "uq_gdpr_requests_erasure",
        "gdpr_requests",
        ["contact_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'erasure'"),
    )
    op.create_table(
        "gdpr_receipts",
        sa.Column("request_id", sa.UUID(), nullable=False),
        sa.Column("service", sa.String(length=20), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["gdpr_requests.id"],
            name=op.f("fk_gdpr_receipts_request_id_gdpr_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", "service", name=op.f("pk_gdpr_receipts")),
    )


def downgrade() -> None:
    op.drop_table("gdpr_receipts")
    op.drop_index("uq_gdpr_requests_erasure", table_name="gdpr_requests")
    op.drop_index("ix_gdpr_requests_contact_id", table_name="gdpr_requests")
    op.drop_table("gdpr_requests")
    op.drop_index("ix_merges_loser_ids", table_name="merges")
    op.drop_index("ix_merges_winner_id", table_name="merges")
    op.drop_table("merges")
