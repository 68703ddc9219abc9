"""One step of an export job: one page of the caller's list written to the file.

Pages come from ``RecordService.page`` acting as the caller (same filters, same
visibility, sensitive fields masked as the API masks them); each page's bytes and
the list cursor after it commit together, so a resumed export continues exactly.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.companies.service import CompanyService
from crm_contacts.contacts.service import ContactService
from crm_contacts.exports.repository import ExportRepository
from crm_contacts.jobs.csv_output import write_csv
from crm_contacts.jobs.principal import record_context
from crm_contacts.jobs.repository import JobRepository
from crm_contacts.jobs.runner import JobKind
from crm_contacts.models import ExportJob
from crm_contacts.records.query import parse_list_query
from crm_contacts.records.service import RecordService
from crm_contacts.settings import ContactsSettings
from crm_lib.events import emit

ADDRESS_PARTS = ("street", "city", "region", "postal_code", "country")
CONSENT_PARTS = ("email_marketing", "sms", "phone_calls", "tracking")
_json = msgspec.json.Encoder()


def service_for(entity: str, session: AsyncSession, ctx: Any) -> RecordService:
    if entity == "companies":
        return CompanyService(session, ctx)
    return ContactService(session, ctx)


def query_params(query: dict[str, Any]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in query.items()}


async def csv_columns(svc: RecordService, fields: list[str]) -> list[str]:
    specs = await svc.specs()
    out: list[str] = []
    for name in fields:
        if name == "address":
            out += [f"address.{p}" for p in ADDRESS_PARTS]
        elif name == "consent":
            out += [f"consent.{p}" for p in CONSENT_PARTS]
        elif name == "custom_fields":
            out += [f"cf.{k}" for k, s in specs.items() if not s.archived]
        else:
            out.append(name)
    return out


def _flat(item: dict[str, Any], column: str) -> Any:
    if column.startswith("address."):
        return (item.get("address") or {}).get(column[8:])
    if column.startswith("consent."):
        return (item.get("consent") or {}).get(column[8:])
    if column.startswith("cf."):
        value = (item.get("custom_fields") or {}).get(column[3:])
        if isinstance(value, list):
            return "; ".join(str(v) for v in value)
        if isinstance(value, dict):
            return f"{value.get('amount')} {value.get('currency')}"
        return value
    value = item.get(column)
    if column == "emails":
        return "; ".join(e.get("address", "") for e in value or [])
    if column == "phones":
        return "; ".join(p.get("number", "") for p in value or [])
    if column == "tags":
        return "; ".join(t.get("name", "") for t in value or [])
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return _json.encode(value).decode()
    return value


async def export_step(session: AsyncSession, job: ExportJob, settings: ContactsSettings) -> bool:
    """Write the next page; True when the export is complete."""
    repo = JobRepository(session)
    ctx = await record_context(session, job.principal, settings)
    svc = service_for(job.entity, session, ctx)
    params = query_params(job.query)
    if job.cursor:
        params["cursor"] = [job.cursor]
    query = parse_list_query(params, limit=settings.export_page_rows)
    fields = list(job.fields) or list(svc.entity.output_fields)
    query.fields = fields
    page = await svc.page(query)
    parts: list[bytes] = []
    first = job.chunk_count == 0
    if job.format == "csv":
        columns = await csv_columns(svc, fields)
        rows: list[list[Any]] = [columns] if first else []
        rows += [[_flat(item, c) for c in columns] for item in page.data]
        parts.append(write_csv(rows))
    else:
        items = [_json.encode(item) for item in page.data]
        if first:
            parts.append(b"[")
        if items:
            parts.append((b"," if job.row_count else b"") + b",".join(items))
        if page.next_cursor is None:
            parts.append(b"]")
    data = b"".join(parts)
    exports = ExportRepository(session)
    if data:
        await exports.add_chunk(job.id, job.chunk_count, data)
    done = page.next_cursor is None
    values: dict[str, Any] = {
        "status": "completed" if done else "running",
        "cursor": page.next_cursor,
        "row_count": job.row_count + len(page.data),
        "byte_count": job.byte_count + len(data),
        "chunk_count": job.chunk_count + (1 if data else 0),
    }
    if done:
        await repo.audit(
            actor=job.created_by,
            action="export",
            entity="company" if job.entity == "companies" else "contact",
            record_count=values["row_count"],
            details={
                "export_id": str(job.id),
                "format": job.format,
                "query": job.query,
                "fields": list(job.fields),
            },
        )
        await emit(
            session,
            "contacts.export.completed",
            job.principal["tenant_id"],
            {
                "export_id": str(job.id),
                "entity": job.entity,
                "format": job.format,
                "rows": values["row_count"],
                "bytes": values["byte_count"],
            },
            actor=job.created_by,
        )
    await exports.advance(job.id, values, done=done, lease_seconds=settings.job_lease_seconds)
    return done


class ExportSteps:
    """One leased run of an export job: a page per step."""

    def __init__(self, settings: ContactsSettings) -> None:
        self.settings = settings

    async def step(self, session: AsyncSession, job: ExportJob) -> bool:
        return await export_step(session, job, self.settings)

    def close(self) -> None:
        pass


EXPORT_JOBS = JobKind(model=ExportJob, queued_event="contacts.export.queued", start=ExportSteps)
