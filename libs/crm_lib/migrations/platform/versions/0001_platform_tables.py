"""Shared platform tables: outbox, inbox, tenant registry replica.

Revision ID: lib0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "lib0001"
down_revision = None
branch_labels = None
depends_on = None

S = "platform"


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        schema=S,
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["created_at"],
        schema=S,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    # Wake the relay on commit instead of making it poll (one notification per transaction).
    op.execute(
        """
        CREATE FUNCTION platform.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('crm_outbox', ''); RETURN NULL; END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON platform.outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION platform.notify_outbox()"
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(200), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column(
            "processed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_inbox"),
        schema=S,
    )
    op.create_table(
        "tenant_registry",
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("slug", sa.String(100), nullable=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("schema_name", sa.String(63), nullable=False),
        sa.Column("schema_version", sa.String(64), nullable=True),
        sa.Column(
            "migration_status", sa.String(20), server_default=sa.text("'ok'"), nullable=False
        ),
        sa.Column("migration_error", sa.Text(), nullable=True),
        sa.Column("migrated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_registry"),
        sa.UniqueConstraint("schema_name", name="uq_tenant_registry_schema_name"),
        schema=S,
    )
    op.create_index(
        "ix_tenant_registry_schema_version", "tenant_registry", ["schema_version"], schema=S
    )


def downgrade() -> None:
    op.drop_table("tenant_registry", schema=S)
    op.drop_table("inbox", schema=S)
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON platform.outbox")
    op.execute("DROP FUNCTION IF EXISTS platform.notify_outbox()")
    op.drop_table("outbox", schema=S)
