"""Queries of the ``activities`` table (logged entries and projected events)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import Activity, Contact, ContactCompany


class ActivityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, activity_id: uuid.UUID, *, lock: bool = False) -> Activity | None:
        stmt = select(Activity).where(Activity.id == activity_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def insert(self, values: dict[str, Any]) -> Activity:
        stmt = insert(Activity).values(**values).returning(Activity)
        return (await self.session.execute(stmt)).scalar_one()

    async def update(self, activity_id: uuid.UUID, values: dict[str, Any]) -> Activity:
        stmt = (
            update(Activity)
            .where(Activity.id == activity_id)
            .values(**values, version=Activity.version + 1, updated_at=func.now())
            .returning(Activity)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one()

    async def delete(self, activity_id: uuid.UUID) -> None:
        await self.session.execute(delete(Activity).where(Activity.id == activity_id))

    async def project(self, values: dict[str, Any]) -> bool:
        """Insert a projected event once per source event; False if it was already there."""
        stmt = (
            pg_insert(Activity)
            .values(**values)
            .on_conflict_do_nothing(
                index_elements=["source_event_id"],
                index_where=text("source_event_id IS NOT NULL"),
            )
            .returning(Activity.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def timeline(
        self,
        *,
        contact_id: uuid.UUID | None = None,
        company_id: uuid.UUID | None = None,
        linked_contacts_of: tuple[uuid.UUID, list[ColumnElement[bool]]] | None = None,
        after: tuple[datetime, uuid.UUID] | None = None,
        limit: int,
    ) -> list[Activity]:
        """Newest first (occurred_at desc, id desc), strictly after the ``after`` key.

        ``linked_contacts_of`` = (company id, contact visibility conditions) adds the
        entries of the live contacts linked to that company which pass the conditions.
        """
        stmt = select(Activity)
        if contact_id is not None:
            stmt = stmt.where(Activity.contact_id == contact_id)
        if linked_contacts_of is not None:
            linked_company, visible = linked_contacts_of
            linked = (
                select(ContactCompany.contact_id)
                .join(Contact, Contact.id == ContactCompany.contact_id)
                .where(
                    ContactCompany.company_id == linked_company,
                    Contact.deleted_at.is_(None),
                    *visible,
                )
            )
            stmt = stmt.where(
                or_(Activity.company_id == linked_company, Activity.contact_id.in_(linked))
            )
        elif company_id is not None:
            stmt = stmt.where(Activity.company_id == company_id)
        if after is not None:
            stmt = stmt.where(tuple_(Activity.occurred_at, Activity.id) < tuple_(*after))
        stmt = stmt.order_by(Activity.occurred_at.desc(), Activity.id.desc()).limit(limit)
        return list((await self.session.execute(stmt)).scalars())
