"""Record queries shared by contacts and companies (all SQL on records lives here)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    func,
    insert,
    select,
    text,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import AccessAudit, FieldChange, Member


class RecordRepository:
    def __init__(self, session: AsyncSession, model: Any) -> None:
        self.session = session
        self.model = model

    def live(self) -> Select[Any]:
        return select(self.model).where(self.model.deleted_at.is_(None))

    async def get(self, record_id: uuid.UUID, *, lock: bool = False) -> Any | None:
        stmt = self.live().where(self.model.id == record_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_many(self, ids: list[uuid.UUID], *, lock: bool = False) -> list[Any]:
        if not ids:
            return []
        stmt = self.live().where(self.model.id.in_(ids)).order_by(self.model.id)
        if lock:
            stmt = stmt.with_for_update()
        return list((await self.session.execute(stmt)).scalars())

    async def find_live_by(self, column: str, value: Any) -> Any | None:
        """The oldest live record whose ``column`` equals ``value`` (upsert keys)."""
        attr = getattr(self.model, column)
        stmt = (
            self.live()
            .where(attr == value)
            .order_by(self.model.created_at, self.model.id)
            .limit(1)
            .with_for_update()
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def insert(self, values: dict[str, Any]) -> Any:
        stmt = insert(self.model).values(**values).returning(self.model)
        return (await self.session.execute(stmt)).scalar_one()

    async def update(self, record_id: uuid.UUID, values: dict[str, Any]) -> Any:
        stmt = (
            update(self.model)
            .where(self.model.id == record_id)
            .values(**values, version=self.model.version + 1, updated_at=func.now())
            .returning(self.model)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one()

    async def page(
        self,
        where: list[ColumnElement[bool]],
        order: list[Any],
        limit: int,
        extra_columns: list[Any] | None = None,
    ) -> list[Any]:
        stmt = select(self.model, *(extra_columns or [])).where(
            self.model.deleted_at.is_(None), *where
        )
        stmt = stmt.order_by(*order).limit(limit)
        return list((await self.session.execute(stmt)).all())

    def search_candidates(
        self,
        where: list[ColumnElement[bool]],
        exact: ColumnElement[bool],
        fuzzy: ColumnElement[bool],
        limit: int,
        fuzzy_below: int,
    ) -> CompoundSelect:
        """Ids of up to ``limit`` live ``exact`` matches, plus up to ``limit`` ``fuzzy``
        ones when there were fewer than ``fuzzy_below`` exact ones (else no fuzzy scan)."""
        live = [self.model.deleted_at.is_(None), *where]
        first = select(self.model.id).where(*live, exact).limit(limit).cte("search_exact")
        short = select(func.count()).select_from(first).scalar_subquery() < fuzzy_below
        more = select(self.model.id).where(*live, fuzzy, short).limit(limit)
        return union(select(first.c.id), more)

    async def set_word_similarity_threshold(self, value: float) -> None:
        await self.session.execute(
            text("SELECT set_config('pg_trgm.word_similarity_threshold', :v, true)"),
            {"v": str(value)},
        )

    async def active_member(self, user_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(Member.user_id).where(Member.user_id == user_id, Member.active)
        )
        return found is not None

    async def add_changes(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(FieldChange), rows)

    async def audit(self, **values: Any) -> None:
        await self.session.execute(insert(AccessAudit).values(**values))
