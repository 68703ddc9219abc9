"""Saved views: personal or shared filter + sort + columns, validated like a list query."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.access import ADMINS, SCOPED, WRITE_ALL, forbidden
from crm_contacts.companies.service import CompanyService
from crm_contacts.contacts.service import ContactService
from crm_contacts.models import SavedView
from crm_contacts.records.query import RESERVED, bad_query, parse_list_query
from crm_contacts.records.service import RecordContext, RecordService
from crm_contacts.views import schemas
from crm_contacts.views.repository import SavedViewRepository
from crm_lib.http import ProblemError, require_version

RECORD_SERVICES: dict[str, type[RecordService]] = {
    "contact": ContactService,
    "company": CompanyService,
}
SHARERS = WRITE_ALL | {SCOPED}


def as_params(
    filters: dict[str, Any], sort: str | None, columns: list[str]
) -> dict[str, list[str]]:
    """A view as the list endpoint's query parameters."""
    params = {k: list(v) if isinstance(v, list) else [v] for k, v in filters.items()}
    if sort:
        params["sort"] = [sort]
    if columns:
        params["fields"] = [",".join(columns)]
    return params


class SavedViewService:
    def __init__(self, session: AsyncSession, ctx: RecordContext) -> None:
        self.session = session
        self.ctx = ctx
        self.access = ctx.access
        self.repo = SavedViewRepository(session)

    def _user(self) -> uuid.UUID:
        if self.access.user_id is None:
            raise forbidden("Saved views belong to users; API clients pass filters directly.")
        return self.access.user_id

    def editable(self, view: SavedView) -> bool:
        if view.owner_user_id is not None and view.owner_user_id == self.access.user_id:
            return True
        return view.shared and self.access.has(ADMINS, "contacts:admin")

    def out(self, view: SavedView) -> schemas.SavedView:
        return schemas.SavedView(
            id=view.id,
            entity=view.entity,
            name=view.name,
            owner_user_id=view.owner_user_id,
            filters=view.filters,
            sort=view.sort,
            columns=view.columns,
            shared=view.shared,
            version=view.version,
            created_at=view.created_at,
            updated_at=view.updated_at,
            editable=self.editable(view),
        )

    async def _check(
        self, entity: str, filters: dict[str, Any], sort: str | None, columns: list[str]
    ) -> None:
        for key in filters:
            if key in RESERVED - {"q"} or key in ("view", "limit"):
                raise bad_query(f"filters.{key}", "not a filter (use sort / columns)")
        query = parse_list_query(as_params(filters, sort, columns))
        await RECORD_SERVICES[entity](self.session, self.ctx).check_query(query)

    def _require_share(self) -> None:
        if not self.access.has(SHARERS, "contacts:write"):
            raise forbidden("Your role can keep personal views but not share them.")

    async def all(self, entity: str | None) -> list[schemas.SavedView]:
        if entity is not None and entity not in RECORD_SERVICES:
            raise bad_query("entity", "contact or company")
        return [self.out(v) for v in await self.repo.usable(self.access.user_id, entity)]

    async def usable(self, view_id: uuid.UUID) -> SavedView:
        view = await self.repo.get(view_id)
        if view is None or not (view.shared or view.owner_user_id == self.access.user_id):
            raise ProblemError(404, "No such view.")
        return view

    async def _editable(self, view_id: uuid.UUID, if_match: int | None) -> SavedView:
        view = await self.usable(view_id)
        view = await self.repo.get(view_id, lock=True) or view
        if not self.editable(view):
            raise forbidden("Only the view's creator (or an admin, for shared views) changes it.")
        require_version(if_match, view.version, "view")
        return view

    async def create(self, data: schemas.SavedViewCreate) -> schemas.SavedView:
        user_id = self._user()
        if data.shared:
            self._require_share()
        await self._check(data.entity, data.filters, data.sort, data.columns)
        view = await self.repo.insert(
            {
                "id": uuid.uuid4(),
                "entity": data.entity,
                "name": data.name.strip(),
                "owner_user_id": user_id,
                "filters": data.filters,
                "sort": data.sort,
                "columns": data.columns,
                "shared": data.shared,
            }
        )
        return self.out(view)

    async def update(
        self, view_id: uuid.UUID, data: schemas.SavedViewUpdate, if_match: int | None
    ) -> schemas.SavedView:
        view = await self._editable(view_id, if_match)
        given = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        if given.get("shared"):
            self._require_share()
        if "name" in given:
            given["name"] = given["name"].strip()
        await self._check(
            view.entity,
            given.get("filters", view.filters),
            given.get("sort", view.sort),
            given.get("columns", view.columns),
        )
        if not given:
            return self.out(view)
        return self.out(await self.repo.update(view_id, given))

    async def delete(self, view_id: uuid.UUID, if_match: int | None) -> None:
        await self._editable(view_id, if_match)
        await self.repo.delete(view_id)

    async def params_for(self, view_ref: str, entity: str) -> dict[str, list[str]]:
        """The stored query of a usable view of ``entity``, as query parameters."""
        try:
            view_id = uuid.UUID(view_ref)
        except ValueError:
            raise bad_query("view", "must be a view id") from None
        view = await self.usable(view_id)
        if view.entity != entity:
            raise bad_query("view", f"is a {view.entity} view")
        return as_params(view.filters, view.sort, view.columns)
