"""Queries of the contact cards read model, merge re-points and the GDPR part of sales."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_sales.models import ContactCard, Deal, MergeRepoint

#: What a merge may re-point here: target name -> (model, column).
TARGETS: dict[str, tuple[Any, str]] = {
    "deals.contact_id": (Deal, "contact_id"),
    "deals.company_id": (Deal, "company_id"),
    "contact_cards.company_id": (ContactCard, "company_id"),
}


class ContactRefRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------ cards
    async def upsert_card(self, card_id: uuid.UUID, values: dict[str, Any]) -> None:
        """Create or change a card; an erased card never takes data again."""
        stmt = pg_insert(ContactCard).values(id=card_id, **values)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[ContactCard.id],
                set_={**values, "updated_at": func.now()},
                where=ContactCard.status != "erased",
            )
        )

    async def upsert_cards(self, rows: list[dict[str, Any]]) -> None:
        """Create or change many cards in one statement (rows with the same keys, one per
        card); erased cards never take data again."""
        if not rows:
            return
        stmt = pg_insert(ContactCard).values(rows)
        columns = [c for c in rows[0] if c != "id"]
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[ContactCard.id],
                set_={**{c: stmt.excluded[c] for c in columns}, "updated_at": func.now()},
                where=ContactCard.status != "erased",
            )
        )

    async def set_status(
        self, ids: list[uuid.UUID], status: str, merged_into: uuid.UUID | None = None
    ) -> None:
        await self.session.execute(
            update(ContactCard)
            .where(ContactCard.id.in_(ids), ContactCard.status != "erased")
            .values(status=status, merged_into_id=merged_into, updated_at=func.now())
        )

    async def cards(self, ids: list[uuid.UUID]) -> list[ContactCard]:
        return list(await self.session.scalars(select(ContactCard).where(ContactCard.id.in_(ids))))

    async def erase_cards(self, ids: list[uuid.UUID]) -> int:
        """Tombstones: a card created later by a lagging event stays erased."""
        for card_id in ids:
            values = {
                "first_name": "Erased",
                "last_name": None,
                "email": None,
                "status": "erased",
                "erased_at": func.now(),
            }
            stmt = pg_insert(ContactCard).values(id=card_id, **values)
            await self.session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[ContactCard.id], set_={**values, "updated_at": func.now()}
                )
            )
        return len(ids)

    # ------------------------------------------------------------------ merges
    async def repoint(
        self, merge_id: uuid.UUID, target: str, losers: list[uuid.UUID], winner: uuid.UUID
    ) -> int:
        """Point ``target`` references of the losers at the winner, remembering the old ones."""
        model, column = TARGETS[target]
        col = getattr(model, column)
        rows = (
            await self.session.execute(
                select(model.id, col).where(col.in_(losers)).with_for_update()
            )
        ).all()
        if not rows:
            return 0
        await self.session.execute(
            pg_insert(MergeRepoint)
            .values(
                [
                    {"merge_id": merge_id, "target": target, "row_id": r[0], "old_value": r[1]}
                    for r in rows
                ]
            )
            .on_conflict_do_nothing()
        )
        await self.session.execute(update(model).where(col.in_(losers)).values({column: winner}))
        return len(rows)

    async def restore(self, merge_id: uuid.UUID, target: str, winner: uuid.UUID) -> int:
        """Undo a merge's re-points (rows changed since keep their new value)."""
        model, column = TARGETS[target]
        col = getattr(model, column)
        moved = (
            await self.session.execute(
                select(MergeRepoint.row_id, MergeRepoint.old_value).where(
                    MergeRepoint.merge_id == merge_id, MergeRepoint.target == target
                )
            )
        ).all()
        for row_id, old in moved:
            await self.session.execute(
                update(model).where(model.id == row_id, col == winner).values({column: old})
            )
        await self.session.execute(
            delete(MergeRepoint).where(
                MergeRepoint.merge_id == merge_id, MergeRepoint.target == target
            )
        )
        return len(moved)

    # ------------------------------------------------------------------ GDPR
    async def deals_of(self, contact_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        rows = await self.session.scalars(
            select(Deal).where(Deal.contact_id.in_(contact_ids)).order_by(Deal.created_at)
        )
        return [{c.key: getattr(d, c.key) for c in Deal.__table__.columns} for d in rows]
