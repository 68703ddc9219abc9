"""Activities (``/api/v1/activities``) and timelines (``/api/v1/timeline``): HTTP only."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import Parameter

from crm_contacts.activities import schemas
from crm_contacts.activities.service import ActivityService, activity_view
from crm_contacts.records.http import IfMatch, etag, record_context
from crm_lib.auth import Principal
from crm_lib.http import if_match_version
from crm_lib.pagination import Page, clamp_limit
from crm_lib.service import ServiceRuntime

PATH = "/api/v1/activities"
Limit = Annotated[int | None, Parameter(query="limit", required=False)]
Cursor = Annotated[str | None, Parameter(query="cursor", required=False)]
IncludeContacts = Annotated[bool, Parameter(query="include_contacts", required=False)]


class ActivityController(Controller):
    path = PATH
    tags = ["activities"]

    @post("/", status_code=201, summary="Log a note, call, meeting or email on a record")
    async def log_activity(
        self, data: schemas.ActivityCreate, principal: Principal, runtime: ServiceRuntime
    ) -> Response[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ActivityService(session, await record_context(session, principal, runtime))
            view = activity_view(await svc.log(data))
        return Response(
            view, status_code=201, headers={"Location": f"{PATH}/{view['id']}", **etag(view)}
        )

    @get("/{activity_id:uuid}", summary="One activity")
    async def get_activity(
        self, activity_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> Response[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ActivityService(session, await record_context(session, principal, runtime))
            view = activity_view(await svc.visible(activity_id))
        return Response(view, headers=etag(view))

    @patch("/{activity_id:uuid}", summary="Change a logged activity (If-Match → 412 if stale)")
    async def update_activity(
        self,
        activity_id: uuid.UUID,
        data: schemas.ActivityUpdate,
        principal: Principal,
        runtime: ServiceRuntime,
        if_match: IfMatch = None,
    ) -> Response[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ActivityService(session, await record_context(session, principal, runtime))
            row = await svc.update(activity_id, data, if_match_version(if_match))
            view = activity_view(row)
        return Response(view, headers=etag(view))

    @delete("/{activity_id:uuid}", status_code=204, summary="Delete a logged activity")
    async def delete_activity(
        self,
        activity_id: uuid.UUID,
        principal: Principal,
        runtime: ServiceRuntime,
        if_match: IfMatch = None,
    ) -> None:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ActivityService(session, await record_context(session, principal, runtime))
            await svc.delete(activity_id, if_match_version(if_match))


class TimelineController(Controller):
    path = "/api/v1/timeline"
    tags = ["activities"]

    async def _timeline(
        self,
        entity: str,
        record_id: uuid.UUID,
        principal: Principal,
        runtime: ServiceRuntime,
        cursor: str | None,
        limit: int | None,
        include_contacts: bool = False,
    ) -> Page[dict[str, Any]]:
        size = clamp_limit(limit)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ActivityService(session, await record_context(session, principal, runtime))
            return await svc.timeline(
                entity, record_id, cursor, size, include_contacts=include_contacts
            )

    @get("/contacts/{contact_id:uuid}", summary="A contact's timeline, newest first")
    async def contact_timeline(
        self,
        contact_id: uuid.UUID,
        principal: Principal,
        runtime: ServiceRuntime,
        cursor: Cursor = None,
        limit: Limit = None,
    ) -> Page[dict[str, Any]]:
        return await self._timeline("contact", contact_id, principal, runtime, cursor, limit)

    @get(
        "/companies/{company_id:uuid}",
        summary="A company's timeline, newest first (include_contacts=true rolls up its "
        "linked contacts' entries that the caller may see)",
    )
    async def company_timeline(
        self,
        company_id: uuid.UUID,
        principal: Principal,
        runtime: ServiceRuntime,
        cursor: Cursor = None,
        limit: Limit = None,
        include_contacts: IncludeContacts = False,
    ) -> Page[dict[str, Any]]:
        return await self._timeline(
            "company", company_id, principal, runtime, cursor, limit, include_contacts
        )
