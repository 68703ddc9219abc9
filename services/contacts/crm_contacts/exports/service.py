"""Export jobs: queue a filtered list export, follow it, download the file.

Only the caller who asked for an export sees it (404 for everyone else); the
worker writes it acting as that caller (``crm_contacts.exports.jobs``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.exports.jobs import query_params, service_for
from crm_contacts.exports.repository import ExportRepository
from crm_contacts.exports.schemas import ExportCreate
from crm_contacts.jobs.principal import principal_record
from crm_contacts.models import ExportJob
from crm_contacts.records.query import bad_query, parse_list_query
from crm_contacts.records.service import RecordContext
from crm_lib.events import emit
from crm_lib.http import ProblemError

RESERVED = ("cursor", "limit")


def export_view(job: ExportJob) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "entity": job.entity,
        "format": job.format,
        "status": job.status,
        "query": job.query,
        "fields": job.fields or None,
        "rows": job.row_count,
        "bytes": job.byte_count,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "last_error": job.last_error,
        "download_url": f"/api/v1/exports/{job.id}/download" if job.status == "completed" else None,
    }


def normalise_query(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        if len(raw) > 4000:
            raise bad_query("query", "at most 4000 characters")
        parsed: dict[str, Any] = parse_qs(raw.lstrip("?"), keep_blank_values=True)
    else:
        parsed = {}
        for key, value in raw.items():
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, (str, int, float, bool)) for v in values):
                raise bad_query(str(key)[:40], "values must be strings or numbers")
            parsed[str(key)] = [
                ("true" if v else "false") if isinstance(v, bool) else str(v) for v in values
            ]
    for key in RESERVED:
        parsed.pop(key, None)
    return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}


class ExportService:
    def __init__(self, session: AsyncSession, ctx: RecordContext) -> None:
        self.session = session
        self.ctx = ctx
        self.access = ctx.access

    async def create(self, data: ExportCreate) -> ExportJob:
        # Exports take customer data out of the CRM: the roles that change records
        # (a rep exports only what they see); read-only roles cannot.
        self.access.require_write()
        query = normalise_query(data.query)
        svc = service_for(data.entity, self.session, self.ctx)
        # Filters, sort and fields compiled now, as the list would (422 with ``errors``),
        # not first by the worker (which would fail the job after every retry).
        await svc.check_query(parse_list_query(query_params(query)))
        fields = svc.check_fields(data.fields) or []
        job_id = uuid.uuid4()
        job = await ExportRepository(self.session).add_job(
            {
                "id": job_id,
                "entity": data.entity,
                "format": data.format,
                "status": "queued",
                "query": query,
                "fields": fields,
                "principal": principal_record(self.access.principal),
                "created_by": self.access.actor,
                "created_by_user": self.access.user_id,
            }
        )
        await emit(
            self.session,
            "contacts.export.queued",
            self.access.principal.tenant_id,
            {"export_id": str(job_id), "entity": data.entity, "format": data.format},
            actor=self.access.actor,
        )
        return job

    async def get(self, export_id: uuid.UUID) -> ExportJob:
        job = await ExportRepository(self.session).get(export_id)
        if job is None or job.created_by != self.access.actor:
            raise ProblemError(404, "No such export.")
        return job

    async def jobs(self) -> list[ExportJob]:
        return await ExportRepository(self.session).jobs(self.access.actor, 100)


async def chunks(session: AsyncSession, export_id: uuid.UUID, count: int) -> AsyncIterator[bytes]:
    repo = ExportRepository(session)
    for seq in range(count):
        data = await repo.chunk_data(export_id, seq)
        if data is not None:
            yield data
