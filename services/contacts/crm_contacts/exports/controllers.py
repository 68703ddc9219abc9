"""Exports API (``/api/v1/exports``): HTTP only, one transaction per request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Response, get, post
from litestar.response import Stream

from crm_contacts.exports.schemas import ExportCreate
from crm_contacts.exports.service import ExportService, chunks, export_view
from crm_contacts.problems import INVALID
from crm_contacts.records.http import record_context
from crm_lib.auth import Principal
from crm_lib.http import ProblemError
from crm_lib.service import ServiceRuntime

PATH = "/api/v1/exports"


class ExportController(Controller):
    path = PATH
    tags = ["exports"]

    @post(
        "/",
        status_code=202,
        summary="Export a filtered contacts/companies list (CSV or JSON)",
        responses={422: INVALID},
    )
    async def create_export(
        self, data: ExportCreate, principal: Principal, runtime: ServiceRuntime
    ) -> Response[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ExportService(session, await record_context(session, principal, runtime))
            view = export_view(await svc.create(data))
        return Response(view, status_code=202, headers={"Location": f"{PATH}/{view['id']}"})

    @get("/", summary="Your exports, newest first")
    async def list_exports(self, principal: Principal, runtime: ServiceRuntime) -> dict[str, Any]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ExportService(session, await record_context(session, principal, runtime))
            return {"data": [export_view(j) for j in await svc.jobs()]}

    @get("/{export_id:uuid}", summary="An export's status")
    async def get_export(
        self, export_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> dict[str, Any]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ExportService(session, await record_context(session, principal, runtime))
            return export_view(await svc.get(export_id))

    @get("/{export_id:uuid}/download", summary="Download a completed export")
    async def download_export(
        self, export_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> Stream:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ExportService(session, await record_context(session, principal, runtime))
            job = await svc.get(export_id)
        if job.status != "completed":
            raise ProblemError(409, f"The export is {job.status}; try again when it completes.")
        count = job.chunk_count

        async def body() -> AsyncIterator[bytes]:
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                async for data in chunks(session, export_id, count):
                    yield data

        media = "text/csv; charset=utf-8" if job.format == "csv" else "application/json"
        return Stream(
            body(),
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="{job.entity}-{export_id}.'
                f'{job.format}"',
                "Content-Length": str(job.byte_count),
            },
        )
