"""Queries of saved views."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import SavedView


class SavedViewRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def usable(self, user_id: uuid.UUID | None, entity: str | None) -> list[SavedView]:
        """The caller's own views and every shared one, by name."""
        stmt = select(SavedView).where(
            or_(SavedView.shared, SavedView.owner_user_id == user_id)
            if user_id is not None
            else SavedView.shared
        )
        if entity is not None:
            stmt = stmt.where(SavedView.entity == entity)
        stmt = stmt.order_by(func.lower(SavedView.name), SavedView.id)
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, view_id: uuid.UUID, *, lock: bool = False) -> SavedView | None:
        stmt = select(SavedView).where(SavedView.id == view_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def insert(self, values: dict[str, Any]) -> SavedView:
        view = SavedView(**values)
        self.session.add(view)
        await self.session.flush()
        await self.session.refresh(view)
        return view

    async def update(self, view_id: uuid.UUID, values: dict[str, Any]) -> SavedView:
        stmt = (
            update(SavedView)
            .where(SavedView.id == view_id)
            .values(**values, version=SavedView.version + 1, updated_at=func.now())
            .returning(SavedView)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one()

    async def delete(self, view_id: uuid.UUID) -> None:
        await self.session.execute(delete(SavedView).where(SavedView.id == view_id))
