"""Billing: accounts (Stripe customer/subscription per tenant) and received webhook events

Revision ID: idn_p0003
Revises: idn_p0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "idn_p0003"
down_revision = "idn_p0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_accounts",
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
        sa.Column(
            "subscription_status",
            sa.String(length=30),
            server_default=sa.text("'none'"),
            nullable=False,
        ),
        sa.Column(
            "cancel_at_period_end", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trial_reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("past_due_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_deletion_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seat_sequence", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("synced_sequence", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("synced_quantity", sa.Integer(), nullable=True),
        sa.Column(
            "last_event_created", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["platform.tenants.id"],
            name=op.f("fk_billing_accounts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_billing_accounts")),
        sa.UniqueConstraint(
            "stripe_customer_id", name=op.f("uq_billing_accounts_stripe_customer_id")
        ),
        sa.UniqueConstraint(
            "stripe_subscription_id", name=op.f("uq_billing_accounts_stripe_subscription_id")
        ),
        schema="platform",
    )
    op.create_table(
        "stripe_webhook_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_stripe_webhook_events")),
        schema="platform",
    )
    # Tenants that exist already get an account (no trial: they keep their status).
    op.execute(
        "INSERT INTO platform.billing_accounts (tenant_id) "
        "SELECT id FROM platform.tenants ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    op.drop_table("stripe_webhook_events", schema="platform")
    op.drop_table("billing_accounts", schema="platform")
