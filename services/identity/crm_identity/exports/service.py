"""Tenant data export jobs: requested by owners/admins, gathered over NATS, zipped.

Each service writes its part to the object store and reports ``export_ready``;
when every service has, identity assembles one zip (the parts plus a manifest)
and the job turns ``ready`` for download.
"""

from __future__ import annotations

import json
import tempfile
import uuid
import zipfile
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.exports.repository import ExportJobRepository
from crm_identity.models import ExportJob
from crm_lib.auth import Principal
from crm_lib.events import EventContext, Subscription, emit
from crm_lib.exports import EXPORT_REQUESTED, export_object_name, export_store
from crm_lib.http import ProblemError


class ExportView(msgspec.Struct):
    id: uuid.UUID
    status: str
    services: dict[str, Any]
    archive_bytes: int | None
    created_at: datetime
    completed_at: datetime | None
    download_url: str | None


def view(job: ExportJob) -> ExportView:
    return ExportView(
        id=job.id,
        status=job.status,
        services=dict(job.parts),
        archive_bytes=job.archive_bytes,
        created_at=job.created_at,
        completed_at=job.completed_at,
        download_url=f"/api/v1/tenant/exports/{job.id}/download" if job.status == "ready" else None,
    )


def _require_admin(principal: Principal) -> None:
    if not principal.has_role("owner", "admin"):
        raise ProblemError(403, "Only owners and admins export the tenant's data.")


async def request_export(session: AsyncSession, principal: Principal) -> ExportView:
    _require_admin(principal)
    job = ExportJob(id=uuid.uuid4(), status="running", requested_by=principal.user_id, parts={})
    jobs = ExportJobRepository(session)
    await jobs.insert(job)
    await emit(
        session,
        EXPORT_REQUESTED,
        principal.tenant_id,
        {"job_id": str(job.id)},
        actor=principal.subject,
    )
    await jobs.refresh(job)
    return view(job)


async def get_export(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> ExportJob:
    _require_admin(principal)
    job = await ExportJobRepository(session).get(job_id)
    if job is None:
        raise ProblemError(404, "No such export.")
    return job


def export_ready_subscription(services: tuple[str, ...]) -> Subscription:
    async def handle(ctx: EventContext) -> None:
        data = ctx.event.data
        job_id = uuid.UUID(str(data["job_id"]))
        service = str(data["service"])
        expected = export_object_name(ctx.event.tenant_id, job_id, f"{service}.jsonl.gz")
        if service not in services or data.get("object") != expected:
            return  # never trust an object name that is not this tenant's
        jobs = ExportJobRepository(ctx.session)
        job = await jobs.get_locked(job_id)
        if job is None or job.status != "running":
            return
        parts = {
            **job.parts,
            service: {
                "object": expected,
                "bytes": data.get("bytes"),
                "tables": data.get("tables", {}),
            },
        }
        if not all(s in parts for s in services):
            await jobs.update(job_id, parts=parts)
            return
        assert ctx.js is not None
        name, size = await _assemble(ctx, job_id, parts)
        await jobs.complete(job_id, parts, name, size)
        await ctx.emit("identity.tenant.export_completed", {"job_id": str(job_id)})

    return Subscription(
        name="tenant-export-ready",
        event_types=["*.tenant.export_ready"],
        handler=handle,
        scope="tenant",
    )


async def _assemble(ctx: EventContext, job_id: uuid.UUID, parts: dict[str, Any]) -> tuple[str, int]:
    assert ctx.js is not None
    store = await export_store(ctx.js)
    name = export_object_name(ctx.event.tenant_id, job_id, "export.zip")
    with tempfile.TemporaryFile() as spool:
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED) as archive:
            for service, part in sorted(parts.items()):
                result = await store.get(part["object"])
                archive.writestr(f"{service}.jsonl.gz", result.data or b"")
            archive.writestr(
                "manifest.json",
                json.dumps(
                    {
                        "tenant_id": str(ctx.event.tenant_id),
                        "job_id": str(job_id),
                        "created_at": datetime.now(UTC).isoformat(),
                        "services": {s: {"tables": p["tables"]} for s, p in parts.items()},
                        "format": "one gzip JSON-lines file per service: {table, row} per line",
                    },
                    indent=2,
                ),
            )
        spool.seek(0)
        info = await store.put(name, spool)
    return name, int(info.size or 0)


async def download(js: Any, job: ExportJob) -> bytes:
    if job.status != "ready" or not job.archive_object:
        raise ProblemError(409, f"The export is {job.status}; try again when it is ready.")
    store = await export_store(js)
    result = await store.get(job.archive_object)
    return result.data or b""
