"""The tenant's data export: ``/api/v1/tenant/exports`` (owners and admins)."""

from __future__ import annotations

import uuid

from litestar import Controller, Response, get, post

from crm_identity.exports import service as exports
from crm_identity.web import API, user_only
from crm_lib.auth import Principal
from crm_lib.service import ServiceRuntime


class ExportController(Controller):
    path = f"{API}/tenant/exports"
    tags = ["tenant"]

    @post("/", status_code=202, summary="Export all of the tenant's data (owner/admin)")
    async def request_export(
        self, principal: Principal, runtime: ServiceRuntime
    ) -> Response[exports.ExportView]:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            job = await exports.request_export(session, principal)
        return Response(
            job, status_code=202, headers={"Location": f"{API}/tenant/exports/{job.id}"}
        )

    @get("/{job_id:uuid}", summary="Progress of an export")
    async def get_export(
        self, job_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> exports.ExportView:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return exports.view(await exports.get_export(session, principal, job_id))

    @get(
        "/{job_id:uuid}/download",
        summary="Download a finished export (zip)",
        media_type="application/zip",
    )
    async def download_export(
        self, job_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> Response[bytes]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            job = await exports.get_export(session, principal, job_id)
        nc = await runtime.nats()
        body = await exports.download(nc.jetstream(), job)
        return Response(
            body,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="crm-export-{job_id}.zip"'},
        )
