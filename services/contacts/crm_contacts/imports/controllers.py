"""Imports API (``/api/v1/imports``): HTTP only, one transaction per request.

Uploads are the raw CSV as the request body (``Content-Type: text/csv``; not
multipart), ``?entity=contacts&filename=...``.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post

from crm_contacts.imports import csvfile
from crm_contacts.imports.schemas import ImportRun
from crm_contacts.imports.service import ImportService, job_view
from crm_contacts.problems import INVALID, SENSITIVE_WRITE
from crm_contacts.records.http import contacts_settings, record_context
from crm_lib.auth import Principal
from crm_lib.http import ProblemError
from crm_lib.service import ServiceRuntime

PATH = "/api/v1/imports"
#: Litestar's own cap; the real limit is the ``import_max_bytes`` setting.
HARD_LIMIT = 1024 * 1024 * 1024
CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream", "")


async def _read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ProblemError(413, f"The file exceeds {limit} bytes.", title="Payload Too Large")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, f"The file exceeds {limit} bytes.", title="Payload Too Large")
        parts.append(chunk)
    return b"".join(parts)


def _int_param(request: Request[Any, Any, Any], name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ProblemError(
            422,
            f"{name} must be a whole number from {lo} to {hi}.",
            title="Validation failed",
            errors=[{"field": name, "message": f"{lo}..{hi}"}],
        )
    return int(raw)


class ImportController(Controller):
    path = PATH
    tags = ["imports"]

    @post(
        "/",
        status_code=201,
        summary="Upload a CSV file (raw text/csv body) for a contacts import",
        request_max_body_size=HARD_LIMIT,
    )
    async def upload(
        self, request: Request[Any, Any, Any], principal: Principal, runtime: ServiceRuntime
    ) -> Response[dict[str, Any]]:
        settings = contacts_settings(runtime)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in CSV_TYPES:
            raise ProblemError(
                415,
                "Send the CSV file itself as the body (Content-Type: text/csv).",
                title="Unsupported Media Type",
            )
        entity = request.query_params.get("entity", "contacts")
        filename = request.query_params.get("filename")
        chunk_rows = _int_param(request, "chunk_rows", settings.import_chunk_rows, 100, 50_000)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            ctx.access.require_write()
        raw = await _read_body(request, settings.import_max_bytes)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            view = await ImportService(session, ctx.access).upload(
                raw, entity=entity, filename=filename, chunk_rows=chunk_rows
            )
        return Response(view, status_code=201, headers={"Location": f"{PATH}/{view['id']}"})

    @get("/", summary="Import jobs (yours; owners/admins see all)")
    async def list_imports(self, principal: Principal, runtime: ServiceRuntime) -> dict[str, Any]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            jobs = await ImportService(session, ctx.access).jobs(None, 100)
            return {"data": [job_view(j) for j in jobs]}

    @get("/{import_id:uuid}", summary="An import: status, counts and percent")
    async def get_import(
        self, import_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> dict[str, Any]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            return job_view(await ImportService(session, ctx.access).visible(import_id))

    @post(
        "/{import_id:uuid}/run",
        status_code=202,
        summary="Run an uploaded file (mapping, mode, match_on, dry_run) in the background",
        responses={403: SENSITIVE_WRITE, 422: INVALID},
    )
    async def run_import(
        self,
        import_id: uuid.UUID,
        data: ImportRun,
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> dict[str, Any]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            return await ImportService(session, ctx.access).start(import_id, data)

    @post("/{import_id:uuid}/revert", status_code=202, summary="Undo a completed import")
    async def revert_import(
        self, import_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> dict[str, Any]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            return await ImportService(session, ctx.access).revert(import_id)

    @get(
        "/{import_id:uuid}/errors",
        summary="Row errors as a CSV report (?format=json for JSON)",
        media_type="text/csv",
    )
    async def import_errors(
        self,
        import_id: uuid.UUID,
        request: Request[Any, Any, Any],
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> Response[Any]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            rows = await ImportService(session, ctx.access).error_rows(import_id)
        if request.query_params.get("format") == "json":
            return Response(
                {
                    "data": [
                        {
                            "row": r[0],
                            "column": r[1] or None,
                            "message": r[2],
                            "value": r[3] or None,
                        }
                        for r in rows
                    ]
                },
                media_type="application/json",
            )
        body = csvfile.write_csv([["row", "column", "message", "value"], *rows])
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="import-{import_id}-errors.csv"'
            },
        )
