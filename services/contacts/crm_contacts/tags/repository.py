"""Queries of tags and of tag arrays on records."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import Company, Contact, Tag

TAGGED = (Contact, Company)


class TagRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self) -> list[Tag]:
        return list(
            (await self.session.execute(select(Tag).order_by(func.lower(Tag.name)))).scalars()
        )

    async def by_ids(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, Tag]:
        if not ids:
            return {}
        rows = await self.session.execute(select(Tag).where(Tag.id.in_(ids)))
        return {t.id: t for t in rows.scalars()}

    async def get(self, tag_id: uuid.UUID) -> Tag | None:
        return await self.session.get(Tag, tag_id)

    async def by_lower_names(self, names: list[str]) -> dict[str, Tag]:
        if not names:
            return {}
        rows = await self.session.execute(select(Tag).where(func.lower(Tag.name).in_(names)))
        return {t.name.lower(): t for t in rows.scalars()}

    async def create_missing(self, names: dict[str, str]) -> None:
        """Insert tags by ``{lower name: display name}``; existing ones are kept."""
        if names:
            await self.session.execute(
                insert(Tag)
                .values([{"id": uuid.uuid4(), "name": n} for n in names.values()])
                .on_conflict_do_nothing()
            )

    async def insert(self, name: str, color: str | None) -> Tag:
        stmt = insert(Tag).values(id=uuid.uuid4(), name=name, color=color)
        return (await self.session.execute(stmt.returning(Tag))).scalar_one()

    async def update(self, tag_id: uuid.UUID, **values: Any) -> Tag:
        stmt = (
            update(Tag)
            .where(Tag.id == tag_id)
            .values(**values, version=Tag.version + 1, updated_at=func.now())
            .returning(Tag)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one()

    async def delete(self, tag_id: uuid.UUID) -> None:
        for model in TAGGED:
            await self.session.execute(
                update(model)
                .where(model.tag_ids.contains([tag_id]))
                .values(tag_ids=func.array_remove(model.tag_ids, tag_id))
            )
        await self.session.execute(delete(Tag).where(Tag.id == tag_id))

    async def merge(self, source: uuid.UUID, target: uuid.UUID) -> int:
        """Re-tag every record carrying ``source`` with ``target`` (no duplicates)."""
        touched = 0
        for model in TAGGED:
            result = await self.session.execute(
                update(model)
                .where(model.tag_ids.contains([source]))
                .values(
                    tag_ids=func.array_append(
                        func.array_remove(func.array_remove(model.tag_ids, source), target),
                        target,
                    )
                )
            )
            touched += result.rowcount  # type: ignore[attr-defined]
        await self.session.execute(delete(Tag).where(Tag.id == source))
        return touched

    async def usage(
        self, tag_id: uuid.UUID, owners: frozenset[uuid.UUID] | None = None
    ) -> dict[str, int]:
        """Records carrying the tag; ``owners`` (not None): only records they own (what
        the caller may see, ``Access.readable_owners``)."""
        out = {}
        for model, name in ((Contact, "contacts"), (Company, "companies")):
            visible = [] if owners is None else [model.owner_id.in_(sorted(owners))]
            out[name] = int(
                await self.session.scalar(
                    select(func.count())
                    .select_from(model)
                    .where(model.tag_ids.contains([tag_id]), model.deleted_at.is_(None), *visible)
                )
                or 0
            )
        return out
