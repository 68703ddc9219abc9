"""Contacts: full records, companies links, tags, custom fields, timeline, history,
audit, saved views, the members/teams read model and search columns.

Revision ID: con_t0002
Revises: con_t0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "con_t0002"
down_revision = "con_t0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_audit",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=True),
        sa.Column("record_count", sa.Integer(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_audit")),
    )
    op.create_index("ix_access_audit_at", "access_audit", ["at"], unique=False)
    op.create_table(
        "activities",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=60), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=True),
        sa.Column("company_id", sa.UUID(), nullable=True),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("source_event_id", sa.UUID(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activities")),
    )
    op.create_index(
        "ix_activities_company", "activities", ["company_id", "occurred_at", "id"], unique=False
    )
    op.create_index(
        "ix_activities_contact", "activities", ["contact_id", "occurred_at", "id"], unique=False
    )
    op.create_index(
        "uq_activities_source_event",
        "activities",
        ["source_event_id"],
        unique=True,
        postgresql_where=sa.text("source_event_id IS NOT NULL"),
    )
    op.create_table(
        "custom_field_definitions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("required", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "options",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "constraints",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("sensitive", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "readable_by",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("archived", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_field_definitions")),
    )
    op.create_index(
        "uq_custom_fields_entity_key", "custom_field_definitions", ["entity", "key"], unique=True
    )
    op.create_table(
        "encryption_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encryption_keys")),
    )
    op.create_table(
        "field_changes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("record_id", sa.UUID(), nullable=False),
        sa.Column("field", sa.String(length=100), nullable=False),
        sa.Column("old_value", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("new_value", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_field_changes")),
    )
    op.create_index("ix_field_changes_record", "field_changes", ["record_id", "id"], unique=False)
    op.create_table(
        "members",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column(
            "roles",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_members")),
    )
    op.create_table(
        "saved_views",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner_user_id", sa.UUID(), nullable=True),
        sa.Column(
            "filters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("sort", sa.String(length=120), nullable=True),
        sa.Column(
            "columns",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("shared", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_views")),
    )
    op.create_index("ix_saved_views_owner", "saved_views", ["owner_user_id"], unique=False)
    op.create_table(
        "tags",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("color", sa.String(length=7), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tags")),
    )
    op.create_index("uq_tags_lower_name", "tags", [sa.literal_column("lower(name)")], unique=True)
    op.create_table(
        "team_memberships",
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "user_id", name=op.f("pk_team_memberships")),
    )
    op.create_index("ix_team_memberships_user", "team_memberships", ["user_id"], unique=False)
    op.create_table(
        "team_rules",
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column("access", sa.String(length=10), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_team_rules")),
    )
    op.create_table(
        "contact_companies",
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("company_id", sa.UUID(), nullable=False),
        sa.Column("role", sa.String(length=120), nullable=True),
        sa.Column("is_primary", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_contact_companies_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_companies_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", "company_id", name=op.f("pk_contact_companies")),
    )
    op.create_index(
        "ix_contact_companies_company", "contact_companies", ["company_id"], unique=False
    )
    op.create_index(
        "uq_contact_companies_primary",
        "contact_companies",
        ["contact_id"],
        unique=True,
        postgresql_where=sa.text("is_primary"),
    )
    op.add_column("companies", sa.Column("industry", sa.String(length=120), nullable=True))
    op.add_column("companies", sa.Column("size", sa.String(length=20), nullable=True))
    op.add_column(
        "companies",
        sa.Column(
            "address",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "companies",
        sa.Column(
            "tag_ids",
            postgresql.ARRAY(sa.UUID()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
    )
    op.add_column(
        "companies",
        sa.Column(
            "sensitive_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("companies", sa.Column("created_by", sa.String(length=200), nullable=True))
    op.add_column("companies", sa.Column("updated_by", sa.String(length=200), nullable=True))
    op.add_column("companies", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("companies", sa.Column("merged_into_id", sa.UUID(), nullable=True))
    op.add_column(
        "companies",
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
    )
    op.create_index(
        "ix_companies_custom_fields",
        "companies",
        ["custom_fields"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_companies_lower_name", "companies", [sa.literal_column("lower(name)")], unique=False
    )
    op.create_index(
        "ix_companies_search_trgm",
        "companies",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "extensions.gin_trgm_ops"},
    )
    op.create_index(
        "ix_companies_tag_ids", "companies", ["tag_ids"], unique=False, postgresql_using="gin"
    )
    op.create_index("ix_companies_updated_at_id", "companies", ["updated_at", "id"], unique=False)
    op.add_column(
        "contacts",
        sa.Column(
            "emails",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "contacts",
        sa.Column(
            "phones",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("contacts", sa.Column("title", sa.String(length=200), nullable=True))
    op.add_column(
        "contacts",
        sa.Column(
            "address",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("contacts", sa.Column("source", sa.String(length=60), nullable=True))
    op.add_column(
        "contacts",
        sa.Column(
            "consent",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("contacts", sa.Column("external_id", sa.String(length=200), nullable=True))
    op.add_column(
        "contacts",
        sa.Column(
            "tag_ids",
            postgresql.ARRAY(sa.UUID()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
    )
    op.add_column(
        "contacts",
        sa.Column(
            "sensitive_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("contacts", sa.Column("created_by", sa.String(length=200), nullable=True))
    op.add_column("contacts", sa.Column("updated_by", sa.String(length=200), nullable=True))
    op.add_column("contacts", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("contacts", sa.Column("merged_into_id", sa.UUID(), nullable=True))
    op.add_column("contacts", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "contacts",
        sa.Column("search_text", sa.Text(), server_default=sa.text("''"), nullable=False),
    )
    op.add_column(
        "contacts",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('simple'::regconfig, search_text)", persisted=True),
            nullable=False,
        ),
    )
    op.create_index("ix_contacts_created_at_id", "contacts", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_contacts_custom_fields",
        "contacts",
        ["custom_fields"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index("ix_contacts_lifecycle_stage", "contacts", ["lifecycle_stage"], unique=False)
    op.create_index(
        "ix_contacts_owner_updated", "contacts", ["owner_id", "updated_at", "id"], unique=False
    )
    op.create_index("ix_contacts_phone", "contacts", ["phone"], unique=False)
    op.create_index(
        "ix_contacts_search_trgm",
        "contacts",
        ["search_text"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"search_text": "extensions.gin_trgm_ops"},
    )
    op.create_index(
        "ix_contacts_search_vector",
        "contacts",
        ["search_vector"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_contacts_tag_ids", "contacts", ["tag_ids"], unique=False, postgresql_using="gin"
    )
    op.create_index("ix_contacts_updated_at_id", "contacts", ["updated_at", "id"], unique=False)
    op.create_index(
        "uq_contacts_external_id",
        "contacts",
        ["external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL AND deleted_at IS NULL"),
    )
