"""Per-tenant tables of the contacts service.

Every table lives in the tenant's own schema (``crm_lib.tenancy``). Search columns
(``search_text``, ``search_vector``) are maintained by the service on every write;
trigram operators come from the ``extensions`` schema (qualified, because the
transaction-local ``search_path`` names only the tenant schema).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_lib.tenancy import tenant_metadata

TRGM_OPS = "extensions.gin_trgm_ops"


class TenantBase(DeclarativeBase):
    metadata = tenant_metadata()


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def _json_object() -> Any:
    return mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))


def _json_array() -> Any:
    return mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))


def _uuid_array() -> Any:
    return mapped_column(
        ARRAY(UUID(as_uuid=True)), nullable=False, server_default=text("'{}'::uuid[]")
    )


class Company(TenantBase):
    __tablename__ = "companies"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(300), nullable=False)
    domain: Mapped[str | None] = mapped_column(String(255))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    custom_fields: Mapped[dict[str, Any]] = _json_object()
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # con_t0002
    industry: Mapped[str | None] = mapped_column(String(120))
    size: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[dict[str, Any]] = _json_object()
    tag_ids: Mapped[list[uuid.UUID]] = _uuid_array()
    sensitive_fields: Mapped[dict[str, Any]] = _json_object()
    created_by: Mapped[str | None] = mapped_column(String(200))
    updated_by: Mapped[str | None] = mapped_column(String(200))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))

    __table_args__ = (
        Index("ix_companies_owner_id", "owner_id"),
        Index("ix_companies_domain", "domain"),
        Index("ix_companies_updated_at_id", "updated_at", "id"),
        Index("ix_companies_lower_name", func.lower(text("name"))),
        Index("ix_companies_tag_ids", "tag_ids", postgresql_using="gin"),
        Index("ix_companies_custom_fields", "custom_fields", postgresql_using="gin"),
        Index(
            "ix_companies_search_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": TRGM_OPS},
        ),
    )


class Contact(TenantBase):
    __tablename__ = "contacts"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    # The primary email / phone (lower-cased / digits only): dedupe and upsert keys.
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(50))
    company_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("companies.id", ondelete="SET NULL")
    )
    owner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lifecycle_stage: Mapped[str] = mapped_column(
        String(40), nullable=False, server_default=text("'lead'")
    )
    custom_fields: Mapped[dict[str, Any]] = _json_object()
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # con_t0002
    emails: Mapped[list[dict[str, Any]]] = _json_array()
    phones: Mapped[list[dict[str, Any]]] = _json_array()
    title: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[dict[str, Any]] = _json_object()
    source: Mapped[str | None] = mapped_column(String(60))
    consent: Mapped[dict[str, Any]] = _json_object()
    external_id: Mapped[str | None] = mapped_column(String(200))
    tag_ids: Mapped[list[uuid.UUID]] = _uuid_array()
    sensitive_fields: Mapped[dict[str, Any]] = _json_object()
    created_by: Mapped[str | None] = mapped_column(String(200))
    updated_by: Mapped[str | None] = mapped_column(String(200))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Lower-cased names, emails, phone digits and company name: the trigram haystack.
    search_text: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR, Computed("to_tsvector('simple'::regconfig, search_text)", persisted=True)
    )

    __table_args__ = (
        Index("ix_contacts_owner_id", "owner_id"),
        Index("ix_contacts_email", "email"),
        Index("ix_contacts_company_id", "company_id"),
        Index("ix_contacts_phone", "phone"),
        Index(
            "uq_contacts_external_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL AND deleted_at IS NULL"),
        ),
        Index("ix_contacts_updated_at_id", "updated_at", "id"),
        # con_t0005: the default list order (-updated_at, then id).
        Index("ix_contacts_updated_desc_id", text("updated_at DESC NULLS LAST"), "id"),
        Index("ix_contacts_created_at_id", "created_at", "id"),
        Index("ix_contacts_owner_updated", "owner_id", "updated_at", "id"),
        Index("ix_contacts_lifecycle_stage", "lifecycle_stage"),
        Index("ix_contacts_tag_ids", "tag_ids", postgresql_using="gin"),
        Index("ix_contacts_custom_fields", "custom_fields", postgresql_using="gin"),
        Index("ix_contacts_search_vector", "search_vector", postgresql_using="gin"),
        Index(
            "ix_contacts_search_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": TRGM_OPS},
        ),
    )


class SearchWord(TenantBase):
    """The tenant's search dictionary (con_t0006): every distinct word (3 to 60 letters, no
    digits) of contacts' and companies' ``search_text``. Search corrects a typo to the
    closest words here (trigram similarity over ~10⁵ words instead of 10⁶ records);
    ``COLLATE "C"`` so the primary key answers prefix ranges byte-wise."""

    __tablename__ = "search_words"

    word: Mapped[str] = mapped_column(String(60, collation="C"), primary_key=True)

    __table_args__ = (
        Index(
            "ix_search_words_trgm",
            "word",
            postgresql_using="gin",
            postgresql_ops={"word": TRGM_OPS},
        ),
    )


class ContactCompany(TenantBase):
    """Contact ↔ company links: at most one primary per contact, others with a role."""

    __tablename__ = "contact_companies"

    contact_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    company_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str | None] = mapped_column(String(120))
    is_primary: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index("ix_contact_companies_company", "company_id"),
        Index(
            "uq_contact_companies_primary",
            "contact_id",
            unique=True,
            postgresql_where=text("is_primary"),
        ),
    )


class Tag(TenantBase):
    __tablename__ = "tags"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    color: Mapped[str | None] = mapped_column(String(7))
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (Index("uq_tags_lower_name", func.lower(text("name")), unique=True),)


class CustomFieldDefinition(TenantBase):
    __tablename__ = "custom_field_definitions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    entity: Mapped[str] = mapped_column(String(20), nullable=False)
    key: Mapped[str] = mapped_column(String(64), nullable=False)
    label: Mapped[str] = mapped_column(String(200), nullable=False)
    type: Mapped[str] = mapped_column(String(20), nullable=False)
    required: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    options: Mapped[list[str]] = _json_array()
    # Validation limits: min/max (number, currency, text length, date), currency code.
    constraints: Mapped[dict[str, Any]] = _json_object()
    sensitive: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # Roles (besides owner/admin) that may read a sensitive field unmasked.
    readable_by: Mapped[list[str]] = _json_array()
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    archived: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (Index("uq_custom_fields_entity_key", "entity", "key", unique=True),)


class EncryptionKey(TenantBase):
    """The tenant's data key for sensitive fields, wrapped by the service master key."""

    __tablename__ = "encryption_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = _now()


class Activity(TenantBase):
    """One timeline entry: a logged note/call/meeting/email, or an event from a service."""

    __tablename__ = "activities"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # contacts (logged here, editable) | sales | marketing | support (read-only).
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    kind: Mapped[str] = mapped_column(String(60), nullable=False)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    company_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = _json_object()
    occurred_at: Mapped[datetime] = _now()
    # The source event's id (idempotent projection) or null for logged activities.
    source_event_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_by: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index("ix_activities_contact", "contact_id", "occurred_at", "id"),
        Index("ix_activities_company", "company_id", "occurred_at", "id"),
        Index(
            "uq_activities_source_event",
            "source_event_id",
            unique=True,
            postgresql_where=text("source_event_id IS NOT NULL"),
        ),
    )


class FieldChange(TenantBase):
    """Field-level history: who changed what, when, from and to."""

    __tablename__ = "field_changes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(20), nullable=False)
    record_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    field: Mapped[str] = mapped_column(String(100), nullable=False)
    old_value: Mapped[Any] = mapped_column(JSONB, nullable=True)
    new_value: Mapped[Any] = mapped_column(JSONB, nullable=True)
    # create | update | reassign | merge | import | erase | revert ...
    reason: Mapped[str] = mapped_column(String(30), nullable=False)
    actor: Mapped[str | None] = mapped_column(String(200))
    changed_at: Mapped[datetime] = _now()

    __table_args__ = (Index("ix_field_changes_record", "record_id", "id"),)


class AccessAudit(TenantBase):
    """Who exported, bulk-read or gathered personal data, and what they asked for."""

    __tablename__ = "access_audit"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    actor: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    entity: Mapped[str | None] = mapped_column(String(20))
    record_count: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = _json_object()
    at: Mapped[datetime] = _now()

    __table_args__ = (Index("ix_access_audit_at", "at"),)


class SavedView(TenantBase):
    __tablename__ = "saved_views"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    entity: Mapped[str] = mapped_column(String(20), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    filters: Mapped[dict[str, Any]] = _json_object()
    sort: Mapped[str | None] = mapped_column(String(120))
    columns: Mapped[list[str]] = _json_array()
    shared: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (Index("ix_saved_views_owner", "owner_user_id"),)


class Member(TenantBase):
    """Read model of the tenant's users (from identity events): roles and status."""

    __tablename__ = "members"

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    roles: Mapped[list[str]] = _json_array()
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    #: Login email (owner columns of CSV imports name users by it).
    email: Mapped[str | None] = mapped_column(String(320))
    updated_at: Mapped[datetime] = _now()


class Team(TenantBase):
    """Read model of identity's teams (a team rule must name one of them)."""

    __tablename__ = "teams"

    team_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    created_at: Mapped[datetime] = _now()


class TeamMembership(TenantBase):
    """Read model of identity's team memberships."""

    __tablename__ = "team_memberships"

    team_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)

    __table_args__ = (Index("ix_team_memberships_user", "user_id"),)


class TeamRule(TenantBase):
    """A team rule: members of the team see (``read``) or also edit (``edit``) each
    other's records."""

    __tablename__ = "team_rules"

    team_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    access: Mapped[str] = mapped_column(String(10), nullable=False)
    created_at: Mapped[datetime] = _now()


# --------------------------------------------------------------------------- merges and GDPR
# (con_t0004; code in crm_contacts/merges and crm_contacts/privacy)


class Merge(TenantBase):
    """One merge of contacts (or companies): what changed, and what undo needs."""

    __tablename__ = "merges"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    entity: Mapped[str] = mapped_column(String(20), nullable=False)
    winner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    loser_ids: Mapped[list[uuid.UUID]] = _uuid_array()
    choices: Mapped[dict[str, Any]] = _json_object()
    changed_fields: Mapped[list[str]] = _json_array()
    # The winner's pre-merge values and every re-pointed row (cleared by an erasure).
    snapshot: Mapped[dict[str, Any]] = _json_object()
    # The winner's version right after the merge: undo refuses once it moved on.
    winner_version: Mapped[int] = mapped_column(Integer, nullable=False)
    # merged | undone | erased (an erasure touched it: undo impossible)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default=text("'merged'"))
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    undone_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index("ix_merges_winner_id", "winner_id"),
        Index("ix_merges_loser_ids", "loser_ids", postgresql_using="gin"),
    )


class GdprRequest(TenantBase):
    """A GDPR export or erasure of one contact, completed when every service answered."""

    __tablename__ = "gdpr_requests"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)  # export | erasure
    contact_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    # pending | completed
    status: Mapped[str] = mapped_column(
        String(20), nullable=False, server_default=text("'pending'")
    )
    requested_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_gdpr_requests_contact_id", "contact_id", "kind"),
        # One erasure per contact: asking again answers the same receipt.
        Index(
            "uq_gdpr_requests_erasure",
            "contact_id",
            unique=True,
            postgresql_where=text("kind = 'erasure'"),
        ),
    )


class GdprReceipt(TenantBase):
    """One service's answer to a GDPR request."""

    __tablename__ = "gdpr_receipts"

    request_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("gdpr_requests.id", ondelete="CASCADE"), primary_key=True
    )
    service: Mapped[str] = mapped_column(String(20), primary_key=True)
    details: Mapped[dict[str, Any]] = _json_object()
    received_at: Mapped[datetime] = _now()


# ---------------------------------------------------------------------------------------
# Import and export jobs (crm_contacts.imports / crm_contacts.exports, migration con_t0003)
# ---------------------------------------------------------------------------------------


class ImportJob(TenantBase):
    """One uploaded CSV file and its (dry or real) run, checkpointed chunk by chunk."""

    __tablename__ = "import_jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    entity: Mapped[str] = mapped_column(String(20), nullable=False)
    # uploaded | queued | running | validated | completed | failed | revert_queued
    # | reverting | reverted
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    filename: Mapped[str | None] = mapped_column(String(300))
    encoding: Mapped[str] = mapped_column(String(20), nullable=False)
    columns: Mapped[list[str]] = _json_array()
    total_rows: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    chunk_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    mapping: Mapped[dict[str, Any]] = _json_object()
    options: Mapped[dict[str, Any]] = _json_object()
    dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # The next chunk to process (import) or to revert.
    checkpoint: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    counts: Mapped[dict[str, Any]] = _json_object()
    principal: Mapped[dict[str, Any]] = _json_object()
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_by_user: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_import_jobs_created", "created_at", "id"),
        Index("ix_import_jobs_status", "status"),
    )


class ImportChunk(TenantBase):
    """The uploaded rows, parsed once and stored durably in fixed-size chunks."""

    __tablename__ = "import_chunks"

    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("import_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_row: Mapped[int] = mapped_column(Integer, nullable=False)
    row_count: Mapped[int] = mapped_column(Integer, nullable=False)
    # msgpack of [[row number, [cells...]], ...]
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # Ids of the records this chunk created (revert deletes them).
    created_ids: Mapped[list[uuid.UUID]] = _uuid_array()

    __table_args__ = (Index("ix_import_chunks_created_ids", "created_ids", postgresql_using="gin"),)


class ImportRowError(TenantBase):
    """A row problem found by a dry or real run (row number, column, message)."""

    __tablename__ = "import_errors"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("import_jobs.id", ondelete="CASCADE"), nullable=False
    )
    row_no: Mapped[int] = mapped_column(Integer, nullable=False)
    column: Mapped[str | None] = mapped_column(String(300))
    message: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_import_errors_job_row", "job_id", "row_no", "id"),)


class ImportUpdate(TenantBase):
    """Before-image of a record an import changed (revert restores it)."""

    __tablename__ = "import_updates"

    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("import_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    record_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    before: Mapped[dict[str, Any]] = _json_object()
    version_after: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (Index("ix_import_updates_job_seq", "job_id", "seq"),)


class ExportJob(TenantBase):
    """A CSV/JSON export of a filtered list, written in pages by the worker."""

    __tablename__ = "export_jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    entity: Mapped[str] = mapped_column(String(20), nullable=False)
    format: Mapped[str] = mapped_column(String(10), nullable=False)
    # queued | running | completed | failed
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    query: Mapped[dict[str, Any]] = _json_object()
    fields: Mapped[list[str]] = _json_array()
    principal: Mapped[dict[str, Any]] = _json_object()
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_by_user: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    row_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    byte_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    chunk_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # The list cursor after the last written page (resume point).
    cursor: Mapped[str | None] = mapped_column(Text)
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_export_jobs_created", "created_at", "id"),
        Index("ix_export_jobs_status", "status"),
    )


class ExportChunk(TenantBase):
    __tablename__ = "export_chunks"

    export_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("export_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
