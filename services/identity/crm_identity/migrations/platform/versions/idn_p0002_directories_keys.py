"""Seats, login and credential directories, signing keys

Revision ID: idn_p0002
Revises: idn_p0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "idn_p0002"
down_revision = "idn_p0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tenants",
        sa.Column("seats", sa.Integer(), server_default=sa.text("2"), nullable=False),
        schema="platform",
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_jwk", sa.Text(), nullable=False),
        sa.Column("public_jwk", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
        schema="platform",
    )
    op.create_table(
        "credential_directory",
        sa.Column("public_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("credential_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["platform.tenants.id"],
            name=op.f("fk_credential_directory_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("public_id", name=op.f("pk_credential_directory")),
        schema="platform",
    )
    op.create_table(
        "login_directory",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["platform.tenants.id"],
            name=op.f("fk_login_directory_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("email", "tenant_id", name=op.f("pk_login_directory")),
        schema="platform",
    )


def downgrade() -> None:
    op.drop_table("login_directory", schema="platform")
    op.drop_table("credential_directory", schema="platform")
    op.drop_table("signing_keys", schema="platform")
    op.drop_column("tenants", "seats", schema="platform")
