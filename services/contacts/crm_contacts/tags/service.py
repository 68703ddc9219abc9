"""Tags: create, rename, merge, delete; resolving names used on records."""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.access import TAG_MANAGERS, Access
from crm_contacts.models import Tag as TagRow
from crm_contacts.tags import schemas
from crm_contacts.tags.repository import TagRepository
from crm_lib.events import emit
from crm_lib.http import ProblemError, require_version


def view(row: TagRow) -> schemas.Tag:
    return schemas.Tag(row.id, row.name, row.color, row.version, row.created_at, row.updated_at)


class TagService:
    def __init__(self, session: AsyncSession, access: Access) -> None:
        self.session = session
        self.access = access
        self.repo = TagRepository(session)

    def _require_manager(self) -> None:
        self.access.require(TAG_MANAGERS, "contacts:write", "rename, merge or delete tags")

    async def _get(self, tag_id: uuid.UUID) -> TagRow:
        row = await self.repo.get(tag_id)
        if row is None:
            raise ProblemError(404, "No such tag.")
        return row

    async def _name_free(self, name: str, exclude: uuid.UUID | None = None) -> None:
        found = (await self.repo.by_lower_names([name.lower()])).get(name.lower())
        if found is not None and found.id != exclude:
            raise ProblemError(409, f"A tag named '{found.name}' already exists.")

    async def resolve(self, names: list[str]) -> list[uuid.UUID]:
        """Ids for tag names (case-insensitive), creating missing tags for writers."""
        wanted: dict[str, str] = {}
        for name in names:
            wanted.setdefault(name.strip().lower(), name.strip())
        found = await self.repo.by_lower_names(list(wanted))
        missing = {k: v for k, v in wanted.items() if k not in found}
        if missing:
            self.access.require_write()
            await self.repo.create_missing(missing)
            found = await self.repo.by_lower_names(list(wanted))
        return [found[k].id for k in wanted]

    async def list(self) -> list[schemas.Tag]:
        return [view(t) for t in await self.repo.all()]

    async def get(self, tag_id: uuid.UUID) -> schemas.TagUsage:
        row = await self._get(tag_id)
        # Counted through the visibility rule: a rep learns nothing of records they
        # cannot see.
        usage = await self.repo.usage(tag_id, self.access.readable_owners)
        return schemas.TagUsage(view(row), usage["contacts"], usage["companies"])

    async def create(self, data: schemas.TagCreate) -> schemas.Tag:
        self.access.require_write()
        name = data.name.strip()
        await self._name_free(name)
        try:
            async with self.session.begin_nested():
                row = await self.repo.insert(name, data.color)
        except IntegrityError as exc:
            raise ProblemError(409, f"A tag named '{name}' already exists.") from exc
        await self._event("created", row.id, {"name": row.name})
        return view(row)

    async def update(
        self, tag_id: uuid.UUID, data: schemas.TagUpdate, if_match: int | None
    ) -> schemas.Tag:
        self._require_manager()
        row = await self._get(tag_id)
        require_version(if_match, row.version, "tag")
        values: dict[str, object] = {}
        if data.name is not msgspec.UNSET:
            name = str(data.name).strip()
            await self._name_free(name, exclude=tag_id)
            values["name"] = name
        if data.color is not msgspec.UNSET:
            values["color"] = data.color
        if values:
            row = await self.repo.update(tag_id, **values)
            await self._event("updated", tag_id, {"name": row.name})
        return view(row)

    async def merge(self, tag_id: uuid.UUID, data: schemas.TagMerge) -> schemas.TagUsage:
        self._require_manager()
        if data.into_id == tag_id:
            raise ProblemError(
                422, "A tag cannot be merged into itself.", title="Validation failed"
            )
        source = await self._get(tag_id)
        await self._get(data.into_id)
        touched = await self.repo.merge(tag_id, data.into_id)
        await self._event(
            "merged",
            tag_id,
            {"name": source.name, "into_id": str(data.into_id), "records": touched},
        )
        return await self.get(data.into_id)

    async def delete(self, tag_id: uuid.UUID) -> None:
        self._require_manager()
        row = await self._get(tag_id)
        await self.repo.delete(tag_id)
        await self._event("deleted", tag_id, {"name": row.name})

    async def _event(self, action: str, tag_id: uuid.UUID, data: dict[str, object]) -> None:
        await emit(
            self.session,
            f"contacts.tag.{action}",
            self.access.principal.tenant_id,
            {"tag_id": str(tag_id), **data},
            actor=self.access.actor,
        )
