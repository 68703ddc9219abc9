"""Per-tenant tables of the support service (built out by the support issue)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_lib.tenancy import tenant_metadata


class TenantBase(DeclarativeBase):
    metadata = tenant_metadata()


class Ticket(TenantBase):
    __tablename__ = "tickets"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    subject: Mapped[str] = mapped_column(String(500), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default=text("'new'"))
    priority: Mapped[str] = mapped_column(
        String(20), nullable=False, server_default=text("'normal'")
    )
    channel: Mapped[str] = mapped_column(String(20), nullable=False, server_default=text("'api'"))
    requester_contact_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        Index("ix_tickets_status_priority", "status", "priority"),
        Index("ix_tickets_assignee_id", "assignee_id"),
        # sup_t0002: merges and GDPR requests find a requester's tickets.
        Index("ix_tickets_requester_contact_id", "requester_contact_id"),
    )


# --------------------------------------------------------------------------- contact references
# (sup_t0002; code in crm_support/contact_refs: merge re-points of ticket requesters)


class MergeRepoint(TenantBase):
    """A ticket requester a contacts merge moved (so the merge's undo can move it back)."""

    __tablename__ = "merge_repoints"

    merge_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    old_contact_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
