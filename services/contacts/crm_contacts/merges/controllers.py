"""Merge API: ``/api/v1/contacts/merge``, ``/api/v1/companies/merge`` and ``/api/v1/merges``.

HTTP only; one transaction per request (a preview rolls its savepoint back).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.params import Parameter

from crm_contacts.merges.schemas import MergeRequest
from crm_contacts.merges.service import MergeService
from crm_contacts.records.http import IfMatch, contacts_settings, record_context
from crm_lib.auth import Principal
from crm_lib.http import if_match_version
from crm_lib.service import ServiceRuntime

RecordId = Annotated[uuid.UUID, Parameter(query="record_id", required=True)]


async def _preview(
    entity: str,
    data: MergeRequest,
    principal: Principal,
    runtime: ServiceRuntime,
    if_match: str | None,
) -> dict[str, Any]:
    async with runtime.db.tenant_session(principal.tenant_id) as session:
        svc = MergeService(session, await record_context(session, principal, runtime), entity)
        return await svc.preview(data, if_match_version(if_match))


async def _merge(
    entity: str,
    data: MergeRequest,
    principal: Principal,
    runtime: ServiceRuntime,
    if_match: str | None,
) -> Response[dict[str, Any]]:
    hours = contacts_settings(runtime).merge_undo_hours
    async with runtime.db.tenant_session(principal.tenant_id) as session:
        svc = MergeService(session, await record_context(session, principal, runtime), entity)
        out = await svc.merge(data, if_match_version(if_match), hours)
    return Response(
        out,
        status_code=201,
        headers={
            "Location": f"/api/v1/merges/{out['merge_id']}",
            "ETag": f'"{out["result"]["version"]}"',
        },
    )


def merge_controller(entity: str, plural: str, follows: str) -> type[Controller]:
    """``/api/v1/<plural>/merge`` and its preview for one record entity."""

    class RecordMergeController(Controller):
        path = f"/api/v1/{plural}/merge"
        tags = ["merges"]

        @post("/preview", status_code=200, summary=f"What merging these {plural} would give")
        async def preview(
            self,
            data: MergeRequest,
            principal: Principal,
            runtime: ServiceRuntime,
            if_match: IfMatch = None,
        ) -> dict[str, Any]:
            return await _preview(entity, data, principal, runtime, if_match)

        @post("/", status_code=201, summary=f"Merge {plural} into the winner ({follows})")
        async def merge(
            self,
            data: MergeRequest,
            principal: Principal,
            runtime: ServiceRuntime,
            if_match: IfMatch = None,
        ) -> Response[dict[str, Any]]:
            return await _merge(entity, data, principal, runtime, if_match)

    RecordMergeController.__name__ = RecordMergeController.__qualname__ = (
        f"{entity.title()}MergeController"
    )
    return RecordMergeController


ContactMergeController = merge_controller("contact", "contacts", "If-Match: winner version")
CompanyMergeController = merge_controller("company", "companies", "contacts follow")


class MergeController(Controller):
    path = "/api/v1/merges"
    tags = ["merges"]

    @get("/", summary="Merges a record took part in (?record_id=): where did it go?")
    async def list_merges(
        self, record_id: RecordId, principal: Principal, runtime: ServiceRuntime
    ) -> dict[str, Any]:
        hours = contacts_settings(runtime).merge_undo_hours
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = MergeService(session, await record_context(session, principal, runtime))
            return {"data": await svc.of_record(record_id, hours), "next_cursor": None}

    @get("/{merge_id:uuid}", summary="One merge: winner, losers, status, undo window")
    async def get_merge(
        self, merge_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> dict[str, Any]:
        hours = contacts_settings(runtime).merge_undo_hours
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = MergeService(session, await record_context(session, principal, runtime))
            return await svc.get(merge_id, hours)

    @post("/{merge_id:uuid}/undo", status_code=200, summary="Undo a merge (within the window)")
    async def undo(
        self, merge_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> dict[str, Any]:
        hours = contacts_settings(runtime).merge_undo_hours
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = MergeService(session, await record_context(session, principal, runtime))
            return await svc.undo(merge_id, hours)
