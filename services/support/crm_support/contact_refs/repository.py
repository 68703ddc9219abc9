"""Queries of ticket requesters: merge re-points and the GDPR part of support."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_support.models import MergeRepoint, Ticket

REDACTED = "[erased]"


class TicketRefRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def repoint(self, merge_id: uuid.UUID, losers: list[uuid.UUID], winner: uuid.UUID) -> int:
        rows = (
            await self.session.execute(
                select(Ticket.id, Ticket.requester_contact_id)
                .where(Ticket.requester_contact_id.in_(losers))
                .with_for_update()
            )
        ).all()
        if not rows:
            return 0
        await self.session.execute(
            pg_insert(MergeRepoint)
            .values(
                [{"merge_id": merge_id, "ticket_id": r[0], "old_contact_id": r[1]} for r in rows]
            )
            .on_conflict_do_nothing()
        )
        await self.session.execute(
            update(Ticket)
            .where(Ticket.requester_contact_id.in_(losers))
            .values(requester_contact_id=winner)
        )
        return len(rows)

    async def restore(self, merge_id: uuid.UUID, winner: uuid.UUID) -> int:
        moved = (
            await self.session.execute(
                select(MergeRepoint.ticket_id, MergeRepoint.old_contact_id).where(
                    MergeRepoint.merge_id == merge_id
                )
            )
        ).all()
        for ticket_id, old in moved:
            await self.session.execute(
                update(Ticket)
                .where(Ticket.id == ticket_id, Ticket.requester_contact_id == winner)
                .values(requester_contact_id=old)
            )
        await self.session.execute(delete(MergeRepoint).where(MergeRepoint.merge_id == merge_id))
        return len(moved)

    async def tickets_of(self, contact_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        rows = await self.session.scalars(
            select(Ticket)
            .where(Ticket.requester_contact_id.in_(contact_ids))
            .order_by(Ticket.created_at)
        )
        return [{c.key: getattr(t, c.key) for c in Ticket.__table__.columns} for t in rows]

    async def redact_tickets(self, contact_ids: list[uuid.UUID]) -> int:
        """The requester's words go; the ticket (status, priority, SLA facts) stays."""
        result = await self.session.execute(
            update(Ticket)
            .where(Ticket.requester_contact_id.in_(contact_ids))
            .values(
                subject=REDACTED,
                description=None,
                version=Ticket.version + 1,
                updated_at=func.now(),
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
