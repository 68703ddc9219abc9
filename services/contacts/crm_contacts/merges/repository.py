"""Queries of merges: the merge log, and the related rows a merge re-points (and undo restores)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import Activity, Company, Contact, ContactCompany, Merge


class MergeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------ the merge log
    async def insert(self, values: dict[str, Any]) -> Merge:
        return (
            await self.session.execute(insert(Merge).values(**values).returning(Merge))
        ).scalar_one()

    async def get(self, merge_id: uuid.UUID, *, lock: bool = False) -> Merge | None:
        stmt = select(Merge).where(Merge.id == merge_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def update(self, merge_id: uuid.UUID, values: dict[str, Any]) -> Merge:
        stmt = (
            update(Merge)
            .where(Merge.id == merge_id)
            .values(**values)
            .returning(Merge)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one()

    async def involving(self, record_id: uuid.UUID) -> list[Merge]:
        """Merges whose winner or one of whose losers is ``record_id``."""
        stmt = select(Merge).where(
            (Merge.winner_id == record_id) | Merge.loser_ids.contains([record_id])
        )
        return list((await self.session.scalars(stmt)).all())

    async def of_record(self, record_id: uuid.UUID, limit: int = 100) -> list[Merge]:
        """Merges a record took part in (as winner or loser), newest first."""
        stmt = (
            select(Merge)
            .where((Merge.winner_id == record_id) | Merge.loser_ids.contains([record_id]))
            .order_by(Merge.created_at.desc())
            .limit(limit)
        )
        return list((await self.session.scalars(stmt)).all())

    # ------------------------------------------------------------------ records (any state)
    async def records(self, model: Any, ids: list[uuid.UUID], *, lock: bool = False) -> list[Any]:
        """Rows by id whether live, deleted or merged (undo and the merge view need them)."""
        stmt = select(model).where(model.id.in_(ids)).order_by(model.id)
        if lock:
            stmt = stmt.with_for_update()
        return list((await self.session.execute(stmt)).scalars())

    async def live_company_name(self, company_id: uuid.UUID) -> str | None:
        name = await self.session.scalar(
            select(Company.name).where(Company.id == company_id, Company.deleted_at.is_(None))
        )
        return None if name is None else str(name)

    # ------------------------------------------------------------------ activities
    async def repoint_activities(
        self, column: str, losers: list[uuid.UUID], winner: uuid.UUID
    ) -> list[list[str]]:
        """Move the losers' activities to the winner; ``[activity id, old record id]`` each."""
        col = getattr(Activity, column)
        old = (
            await self.session.execute(
                select(Activity.id, col).where(col.in_(losers)).with_for_update()
            )
        ).all()
        if old:
            await self.session.execute(
                update(Activity)
                .where(col.in_(losers))
                .values({column: winner})
                .execution_options(synchronize_session=False)
            )
        return [[str(a), str(b)] for a, b in old]

    async def restore_activities(
        self, column: str, moved: list[list[str]], winner: uuid.UUID
    ) -> None:
        col = getattr(Activity, column)
        by_old: dict[str, list[uuid.UUID]] = {}
        for activity_id, old in moved:
            by_old.setdefault(old, []).append(uuid.UUID(activity_id))
        for old, ids in by_old.items():
            await self.session.execute(
                update(Activity)
                .where(Activity.id.in_(ids), col == winner)
                .values({column: uuid.UUID(old)})
                .execution_options(synchronize_session=False)
            )

    # ------------------------------------------------------------------ contact merge: links
    async def contact_links(self, contact_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = await self.session.scalars(
            select(ContactCompany).where(ContactCompany.contact_id == contact_id)
        )
        return [
            {"company_id": str(r.company_id), "role": r.role, "is_primary": r.is_primary}
            for r in rows
        ]

    async def copy_links(self, losers: list[uuid.UUID], winner: uuid.UUID) -> None:
        """Give the winner every company link of the losers (never as primary)."""
        rows = (
            await self.session.execute(
                select(ContactCompany.company_id, ContactCompany.role)
                .join(Company, Company.id == ContactCompany.company_id)
                .where(ContactCompany.contact_id.in_(losers), Company.deleted_at.is_(None))
            )
        ).all()
        for company_id, role in rows:
            await self.session.execute(
                pg_insert(ContactCompany)
                .values(contact_id=winner, company_id=company_id, role=role, is_primary=False)
                .on_conflict_do_nothing()
            )

    async def restore_contact_links(
        self, contact_id: uuid.UUID, before: list[dict[str, Any]]
    ) -> None:
        """Drop links the merge added and put the primary flag back where it was."""
        kept = [uuid.UUID(link["company_id"]) for link in before]
        await self.session.execute(
            delete(ContactCompany).where(
                ContactCompany.contact_id == contact_id, ContactCompany.company_id.not_in(kept)
            )
        )
        primary = next((uuid.UUID(x["company_id"]) for x in before if x["is_primary"]), None)
        # Two steps: the one-primary index is checked row by row.
        await self.session.execute(
            update(ContactCompany)
            .where(ContactCompany.contact_id == contact_id, ContactCompany.is_primary)
            .values(is_primary=False)
        )
        if primary is not None:
            await self.session.execute(
                update(ContactCompany)
                .where(
                    ContactCompany.contact_id == contact_id, ContactCompany.company_id == primary
                )
                .values(is_primary=True)
            )

    # ------------------------------------------------------------------ company merge
    async def repoint_contacts(self, losers: list[uuid.UUID], winner: uuid.UUID) -> list[list[str]]:
        """Contacts whose company was a loser now name the winner; ``[contact, old]`` each."""
        old = (
            await self.session.execute(
                select(Contact.id, Contact.company_id)
                .where(Contact.company_id.in_(losers))
                .with_for_update()
            )
        ).all()
        if old:
            await self.session.execute(
                update(Contact)
                .where(Contact.company_id.in_(losers))
                .values(company_id=winner)
                .execution_options(synchronize_session=False)
            )
        return [[str(a), str(b)] for a, b in old]

    async def restore_contacts(self, moved: list[list[str]], winner: uuid.UUID) -> None:
        for contact_id, old in moved:
            await self.session.execute(
                update(Contact)
                .where(Contact.id == uuid.UUID(contact_id), Contact.company_id == winner)
                .values(company_id=uuid.UUID(old))
                .execution_options(synchronize_session=False)
            )

    async def merge_company_links(
        self, losers: list[uuid.UUID], winner: uuid.UUID
    ) -> dict[str, list[dict[str, Any]]]:
        """Move the losers' contact links to the winner; what changed, for undo."""
        loser_rows = list(
            await self.session.scalars(
                select(ContactCompany)
                .where(ContactCompany.company_id.in_(losers))
                .with_for_update()
            )
        )
        removed = [
            {
                "contact_id": str(r.contact_id),
                "company_id": str(r.company_id),
                "role": r.role,
                "is_primary": r.is_primary,
            }
            for r in loser_rows
        ]
        if not removed:
            return {"removed": [], "inserted": [], "updated": []}
        winner_rows = {
            r.contact_id: {"role": r.role, "is_primary": r.is_primary}
            for r in await self.session.scalars(
                select(ContactCompany).where(ContactCompany.company_id == winner).with_for_update()
            )
        }
        await self.session.execute(
            delete(ContactCompany).where(ContactCompany.company_id.in_(losers))
        )
        inserted: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        touched: set[uuid.UUID] = set()
        for link in removed:
            contact_id = uuid.UUID(link["contact_id"])
            current = winner_rows.get(contact_id)
            if current is None:
                winner_rows[contact_id] = {"role": link["role"], "is_primary": link["is_primary"]}
                await self.session.execute(
                    insert(ContactCompany).values(
                        contact_id=contact_id,
                        company_id=winner,
                        role=link["role"],
                        is_primary=link["is_primary"],
                    )
                )
                inserted.append({"contact_id": str(contact_id)})
                touched.add(contact_id)
                continue
            role = current["role"] or link["role"]
            primary = current["is_primary"] or link["is_primary"]
            if (role, primary) != (current["role"], current["is_primary"]):
                if contact_id not in touched:
                    updated.append({"contact_id": str(contact_id), **current})
                    touched.add(contact_id)
                winner_rows[contact_id] = {"role": role, "is_primary": primary}
                await self.session.execute(
                    update(ContactCompany)
                    .where(
                        ContactCompany.contact_id == contact_id,
                        ContactCompany.company_id == winner,
                    )
                    .values(role=role, is_primary=primary)
                )
        return {"removed": removed, "inserted": inserted, "updated": updated}

    async def restore_company_links(
        self, changes: dict[str, list[dict[str, Any]]], winner: uuid.UUID
    ) -> None:
        for row in changes.get("updated", []):
            await self.session.execute(
                update(ContactCompany)
                .where(
                    ContactCompany.contact_id == uuid.UUID(row["contact_id"]),
                    ContactCompany.company_id == winner,
                )
                .values(role=row["role"], is_primary=row["is_primary"])
            )
        inserted = [uuid.UUID(r["contact_id"]) for r in changes.get("inserted", [])]
        if inserted:
            await self.session.execute(
                delete(ContactCompany).where(
                    ContactCompany.company_id == winner, ContactCompany.contact_id.in_(inserted)
                )
            )
        for row in changes.get("removed", []):
            contact_id, company_id = uuid.UUID(row["contact_id"]), uuid.UUID(row["company_id"])
            exists = await self.session.scalar(select(Contact.id).where(Contact.id == contact_id))
            if exists is None:
                continue
            await self.session.execute(
                pg_insert(ContactCompany)
                .values(
                    contact_id=contact_id,
                    company_id=company_id,
                    role=row["role"],
                    is_primary=row["is_primary"],
                )
                .on_conflict_do_nothing()
            )

    async def contacts_of(self, contact_ids: list[uuid.UUID]) -> list[Contact]:
        return list(await self.session.scalars(select(Contact).where(Contact.id.in_(contact_ids))))

    async def set_search_text(self, contact_id: uuid.UUID, value: str) -> None:
        await self.session.execute(
            update(Contact)
            .where(Contact.id == contact_id)
            .values(search_text=value)
            .execution_options(synchronize_session=False)
        )

    async def company_names(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        rows = await self.session.execute(
            select(Company.id, Company.name).where(
                and_(Company.id.in_(ids), Company.deleted_at.is_(None))
            )
        )
        return {i: str(n) for i, n in rows.all()}

    async def now(self) -> Any:
        return await self.session.scalar(select(func.now()))
