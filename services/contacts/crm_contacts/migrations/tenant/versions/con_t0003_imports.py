"""Contacts: import and export jobs.

Revision ID: con_t0003
Revises: con_t0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "con_t0003"
down_revision = "con_t0002"
branch_labels = None
depends_on = None


def _now(name: str) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _json(name: str, default: str) -> sa.Column:
    return sa.Column(
        name,
        postgresql.JSONB(astext_type=sa.Text()),
        server_default=sa.text(f"'{default}'::jsonb"),
        nullable=False,
    )


def _int(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=True),
        sa.Column("encoding", sa.String(length=20), nullable=False),
        _json("columns", "[]"),
        _int("total_rows"),
        _int("chunk_count"),
        _json("mapping", "{}"),
        _json("options", "{}"),
        sa.Column("dry_run", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _int("checkpoint"),
        _json("counts", "{}"),
        _json("principal", "{}"),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_by_user", sa.UUID(), nullable=True),
        sa.Column("lease_token", sa.UUID(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        _int("attempts"),
        sa.Column("last_error", sa.Text(), nullable=True),
        _now("created_at"),
        _now("updated_at"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_jobs")),
    )
    op.create_index("ix_import_jobs_created", "import_jobs", ["created_at", "id"], unique=False)
    op.create_index("ix_import_jobs_status", "import_jobs", ["status"], unique=False)
    op.create_table(
        "import_chunks",
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("first_row", sa.Integer(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_ids",
            postgresql.ARRAY(sa.UUID()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["import_jobs.id"],
            name=op.f("fk_import_chunks_job_id_import_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "seq", name=op.f("pk_import_chunks")),
    )
    op.create_index(
        "ix_import_chunks_created_ids",
        "import_chunks",
        ["created_ids"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_table(
        "import_errors",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("row_no", sa.Integer(), nullable=False),
        sa.Column("column", sa.String(length=300), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["import_jobs.id"],
            name=op.f("fk_import_errors_job_id_import_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_errors")),
    )
    op.create_index(
        "ix_import_errors_job_row", "import_errors", ["job_id", "row_no", "id"], unique=False
    )
    op.create_table(
        "import_updates",
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("record_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _json("before", "{}"),
        sa.Column("version_after", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["import_jobs.id"],
            name=op.f("fk_import_updates_job_id_import_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "record_id", name=op.f("pk_import_updates")),
    )
    op.create_index("ix_import_updates_job_seq", "import_updates", ["job_id", "seq"], unique=False)
    op.create_table(
        "export_jobs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _json("query", "{}"),
        _json("fields", "[]"),
        _json("principal", "{}"),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_by_user", sa.UUID(), nullable=True),
        _int("row_count"),
        sa.Column("byte_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _int("chunk_count"),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("lease_token", sa.UUID(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        _int("attempts"),
        sa.Column("last_error", sa.Text(), nullable=True),
        _now("created_at"),
        _now("updated_at"),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_jobs")),
    )
    op.create_index("ix_export_jobs_created", "export_jobs", ["created_at", "id"], unique=False)
    op.create_index("ix_export_jobs_status", "export_jobs", ["status"], unique=False)
    op.create_table(
        "export_chunks",
        sa.Column("export_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["export_id"],
            ["export_jobs.id"],
            name=op.f("fk_export_chunks_export_id_export_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("export_id", "seq", name=op.f("pk_export_chunks")),
    )


def downgrade() -> None:
    op.drop_table("export_chunks")
    op.drop_index("ix_export_jobs_status", table_name="export_jobs")
    op.drop_index("ix_export_jobs_created", table_name="export_jobs")
    op.drop_table("export_jobs")
    op.drop_index("ix_import_updates_job_seq", table_name="import_updates")
    op.drop_table("import_updates")
    op.drop_index("ix_import_errors_job_row", table_name="import_errors")
    op.drop_table("import_errors")
    op.drop_index(
        "ix_import_chunks_created_ids", table_name="import_chunks", postgresql_using="gin"
    )
    op.drop_table("import_chunks")
    op.drop_index("ix_import_jobs_status", table_name="import_jobs")
    op.drop_index("ix_import_jobs_created", table_name="import_jobs")
    op.drop_table("import_jobs")
