"""Saved views API (``/api/v1/views``); apply one with ``GET /api/v1/contacts?view=<id>``."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import Parameter

from crm_contacts.records.http import IfMatch, record_context
from crm_contacts.views import schemas
from crm_contacts.views.service import SavedViewService
from crm_lib.auth import Principal
from crm_lib.http import if_match_version
from crm_lib.service import ServiceRuntime

PATH = "/api/v1/views"
EntityParam = Annotated[str | None, Parameter(query="entity", required=False)]


def _etag(view: schemas.SavedView) -> dict[str, str]:
    return {"ETag": f'"{view.version}"'}


class SavedViewController(Controller):
    path = PATH
    tags = ["views"]

    @get("/", summary="The caller's own views and the tenant's shared ones")
    async def list_views(
        self, principal: Principal, runtime: ServiceRuntime, entity: EntityParam = None
    ) -> list[schemas.SavedView]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            return await SavedViewService(session, ctx).all(entity)

    @post("/", status_code=201, summary="Save a view (filters in the list query grammar)")
    async def create_view(
        self, data: schemas.SavedViewCreate, principal: Principal, runtime: ServiceRuntime
    ) -> Response[schemas.SavedView]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            view = await SavedViewService(session, ctx).create(data)
        headers = {"Location": f"{PATH}/{view.id}", **_etag(view)}
        return Response(view, status_code=201, headers=headers)

    @get("/{view_id:uuid}", summary="One view")
    async def get_view(
        self, view_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> Response[schemas.SavedView]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            svc = SavedViewService(session, ctx)
            view = svc.out(await svc.usable(view_id))
        return Response(view, headers=_etag(view))

    @patch("/{view_id:uuid}", summary="Change a view (creator, or an admin for shared ones)")
    async def update_view(
        self,
        view_id: uuid.UUID,
        data: schemas.SavedViewUpdate,
        principal: Principal,
        runtime: ServiceRuntime,
        if_match: IfMatch = None,
    ) -> Response[schemas.SavedView]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            svc = SavedViewService(session, ctx)
            view = await svc.update(view_id, data, if_match_version(if_match))
        return Response(view, headers=_etag(view))

    @delete("/{view_id:uuid}", status_code=204, summary="Delete a view")
    async def delete_view(
        self,
        view_id: uuid.UUID,
        principal: Principal,
        runtime: ServiceRuntime,
        if_match: IfMatch = None,
    ) -> None:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            await SavedViewService(session, ctx).delete(view_id, if_match_version(if_match))
