"""GDPR API (``/api/v1/gdpr``): exports and erasures of one person. HTTP only."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Response, get, post

from crm_contacts.access import access_for
from crm_contacts.privacy.schemas import ErasureRequest, ExportRequest
from crm_contacts.privacy.service import PrivacyService, request_view
from crm_lib.auth import Principal
from crm_lib.http import ProblemError
from crm_lib.privacy import PRIVACY_SERVICES, delete_parts, read_part
from crm_lib.service import ServiceRuntime
from crm_lib.telemetry import describe_error, get_logger

log = get_logger("crm.contacts.gdpr")


class GdprController(Controller):
    path = "/api/v1/gdpr"
    tags = ["gdpr"]

    @post("/exports", status_code=202, summary="Gather everything held about a person (async)")
    async def request_export(
        self, data: ExportRequest, principal: Principal, runtime: ServiceRuntime
    ) -> Response[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = PrivacyService(session, await access_for(session, principal))
            view = await svc.request_export(data.contact_id)
        return Response(
            view, status_code=202, headers={"Location": f"/api/v1/gdpr/exports/{view['id']}"}
        )

    @get("/exports/{request_id:uuid}", summary="An export's status and per-service receipts")
    async def get_export(
        self, request_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> dict[str, Any]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = PrivacyService(session, await access_for(session, principal))
            return await svc.get("export", request_id)

    @get("/exports/{request_id:uuid}/download", summary="The gathered export as one JSON document")
    async def download_export(
        self, request_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> Response[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = PrivacyService(session, await access_for(session, principal))
            request = await svc.completed_export(request_id)
            receipts = await svc.repo.receipts(request.id)
        js = (await runtime.nats()).jetstream()
        parts: dict[str, Any] = {}
        try:
            for service in PRIVACY_SERVICES:
                parts[service] = await read_part(js, principal.tenant_id, request.id, service)
        except Exception as exc:
            log.warning(
                "gdpr.download_failed", request_id=str(request.id), error=describe_error(exc)
            )
            raise ProblemError(
                410, "The export's parts are no longer stored (expired or erased)."
            ) from exc
        document = {
            "export": request_view(request, receipts),
            "generated_at": datetime.now(UTC).isoformat(),
            "services": parts,
        }
        return Response(
            document,
            headers={
                "Content-Disposition": f'attachment; filename="gdpr-export-{request.id}.json"'
            },
        )

    @post(
        "/erasures",
        status_code=202,
        summary="Erase a person everywhere (same receipt if asked again)",
    )
    async def request_erasure(
        self, data: ErasureRequest, principal: Principal, runtime: ServiceRuntime
    ) -> Response[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = PrivacyService(session, await access_for(session, principal))
            view, created, exports = await svc.request_erasure(data.contact_id, data.reason)
        if exports:
            # Earlier exports of the person: drop their stored parts (they expire anyway).
            with contextlib.suppress(Exception):
                js = (await runtime.nats()).jetstream()
                for export_id in exports:
                    await delete_parts(js, principal.tenant_id, export_id)
        return Response(
            view,
            status_code=202 if created else 200,
            headers={"Location": f"/api/v1/gdpr/erasures/{view['id']}"},
        )

    @get("/erasures/{request_id:uuid}", summary="An erasure's receipts per service")
    async def get_erasure(
        self, request_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> dict[str, Any]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = PrivacyService(session, await access_for(session, principal))
            return await svc.get("erasure", request_id)
