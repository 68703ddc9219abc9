"""Import jobs: upload, mapping and start (dry or real), progress, error report, revert.

The web process only parses and stores the upload and queues runs; the worker
(``crm_contacts.jobs.runner`` with ``crm_contacts.imports.jobs``) does the work
chunk by chunk.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.access import ADMINS, Access
from crm_contacts.fields.service import FieldService
from crm_contacts.imports import csvfile
from crm_contacts.imports.mapping import STANDARD_TARGETS
from crm_contacts.imports.repository import ImportRepository
from crm_contacts.imports.rows import MATCH_KEYS
from crm_contacts.imports.schemas import ImportRun
from crm_contacts.jobs.principal import principal_record
from crm_contacts.models import ImportJob
from crm_contacts.records.service import unreadable_fields
from crm_lib.auth import FORBIDDEN_TYPE
from crm_lib.events import emit
from crm_lib.http import ProblemError

COUNT_KEYS = ("total", "processed", "created", "updated", "unchanged", "failed")
ENTITIES = ("contacts",)


def may_see_all_jobs(access: Access) -> bool:
    return access.has(ADMINS, "contacts:admin")


def job_view(job: ImportJob) -> dict[str, Any]:
    counts = {k: int(job.counts.get(k, 0)) for k in COUNT_KEYS}
    counts["total"] = job.total_rows
    percent = round(100.0 * counts["processed"] / job.total_rows, 1) if job.total_rows else 100.0
    if job.status in ("uploaded",):
        percent = 0.0
    view: dict[str, Any] = {
        "id": str(job.id),
        "entity": job.entity,
        "status": job.status,
        "dry_run": job.dry_run,
        "filename": job.filename,
        "encoding": job.encoding,
        "columns": job.columns,
        "mapping": job.mapping or None,
        "options": job.options or None,
        "counts": counts,
        "percent": percent,
        "created_by": job.created_by,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "last_error": job.last_error,
        "attempts": job.attempts,
    }
    if job.status in ("revert_queued", "reverting", "reverted"):
        view["revert"] = {
            "reverted": int(job.counts.get("reverted", 0)),
            "skipped": int(job.counts.get("revert_skipped", 0)),
        }
    return view


class ImportService:
    def __init__(self, session: AsyncSession, access: Access) -> None:
        self.session = session
        self.access = access
        self.repo = ImportRepository(session)

    async def _unreadable(self) -> set[str]:
        """Sensitive fields the caller cannot read, so may not import into (issue 10: an
        update dry run comparing cells with stored values would be an oracle)."""
        specs = await FieldService(self.session, self.access).specs("contact")
        return set(unreadable_fields(self.access, specs, specs))

    async def _custom_lookup(self, *, writable_only: bool = True) -> dict[str, str]:
        specs = await FieldService(self.session, self.access).list("contact")
        unreadable = await self._unreadable() if writable_only else set()
        out: dict[str, str] = {}
        for spec in specs:
            if spec.archived or spec.key in unreadable:
                continue
            out[spec.key] = spec.key
            out[csvfile.normalise_label(spec.key)] = spec.key
            out[csvfile.normalise_label(spec.label)] = spec.key
        return out

    async def upload(
        self, raw: bytes, *, entity: str, filename: str | None, chunk_rows: int
    ) -> dict[str, Any]:
        self.access.require_write()
        if entity not in ENTITIES:
            raise ProblemError(
                422,
                f"entity must be one of: {', '.join(ENTITIES)}.",
                title="Validation failed",
                errors=[{"field": "entity", "message": "unsupported"}],
            )
        parsed = await asyncio.to_thread(csvfile.parse, raw, chunk_rows)
        suggested = csvfile.suggest_mapping(parsed.columns, await self._custom_lookup())
        job_id = uuid.uuid4()
        principal = self.access.principal
        job = await self.repo.add_job(
            {
                "id": job_id,
                "entity": entity,
                "status": "uploaded",
                "filename": (filename or "")[:300] or None,
                "encoding": parsed.encoding,
                "columns": parsed.columns,
                "total_rows": parsed.total_rows,
                "chunk_count": len(parsed.chunks),
                "mapping": {},
                "options": {"delimiter": parsed.delimiter},
                "counts": {},
                "principal": principal_record(principal),
                "created_by": self.access.actor,
                "created_by_user": self.access.user_id,
            }
        )
        await self.repo.add_chunks(
            [
                {"job_id": job_id, "seq": i, "first_row": first, "row_count": size, "data": data}
                for i, (data, first, size) in enumerate(
                    zip(parsed.chunks, parsed.chunk_first_rows, parsed.chunk_sizes, strict=True)
                )
            ]
        )
        view = job_view(job)
        view["suggested_mapping"] = suggested
        view["sample"] = parsed.sample
        return view

    async def visible(self, job_id: uuid.UUID, *, lock: bool = False) -> ImportJob:
        job = await self.repo.get(job_id, lock=lock)
        if job is None or (
            job.created_by != self.access.actor and not may_see_all_jobs(self.access)
        ):
            raise ProblemError(404, "No such import.")
        return job

    async def _check_mapping(self, job: ImportJob, run: ImportRun) -> dict[str, str | None]:
        if run.mapping is None:
            return csvfile.suggest_mapping(job.columns, await self._custom_lookup())
        errors = []
        custom = {v for v in (await self._custom_lookup(writable_only=False)).values()}
        unreadable = await self._unreadable()
        refused = [
            {
                "field": f"mapping.{column}"[:200],
                "message": f"{target}: a sensitive field your role cannot read cannot be "
                "imported by it either",
            }
            for column, target in run.mapping.items()
            if target and target.startswith("cf.") and target[3:] in unreadable
        ]
        if refused:
            raise ProblemError(
                403,
                "Your role cannot write the sensitive field(s) this mapping names.",
                type_=FORBIDDEN_TYPE,
                errors=refused,
            )
        used: dict[str, str] = {}
        for column, target in run.mapping.items():
            if column not in job.columns:
                errors.append({"field": f"mapping.{column}"[:200], "message": "no such column"})
                continue
            if not target:
                continue
            if target not in STANDARD_TARGETS and not (
                target.startswith("cf.") and target[3:] in custom
            ):
                errors.append(
                    {"field": f"mapping.{column}"[:200], "message": f"unknown target {target!r}"}
                )
            elif target in used:
                errors.append(
                    {
                        "field": f"mapping.{column}"[:200],
                        "message": f"{target} is already mapped from {used[target]!r}",
                    }
                )
            used[target] = column
        if errors:
            raise ProblemError(
                422, "The mapping is not valid.", title="Validation failed", errors=errors
            )
        return {c: t for c, t in run.mapping.items() if t}

    async def start(self, job_id: uuid.UUID, run: ImportRun) -> dict[str, Any]:
        self.access.require_write()
        job = await self.visible(job_id, lock=True)
        if job.status not in ("uploaded", "validated"):
            raise ProblemError(
                409, f"The import is {job.status}; only an uploaded or validated file can run."
            )
        mapping = await self._check_mapping(job, run)
        if run.mode != "create" and run.match_on not in MATCH_KEYS:
            raise ProblemError(
                422,
                "update and upsert need match_on: email or external_id.",
                title="Validation failed",
                errors=[{"field": "match_on", "message": "required for update/upsert"}],
            )
        if run.mode != "create" and run.match_on not in mapping.values():
            raise ProblemError(
                422,
                f"match_on {run.match_on} is not mapped from any column.",
                title="Validation failed",
                errors=[{"field": "match_on", "message": "not mapped"}],
            )
        if not mapping:
            raise ProblemError(422, "The mapping maps no column.", title="Validation failed")
        options = {
            "delimiter": job.options.get("delimiter", ","),
            "mode": run.mode,
            "match_on": run.match_on,
            "allow_duplicates": run.allow_duplicates,
            "tag_separator": run.tag_separator,
            "create_companies": run.create_companies,
        }
        await self.repo.clear_results(job.id)
        await self.repo.set(
            job.id,
            status="queued",
            dry_run=run.dry_run,
            mapping=mapping,
            options=options,
            checkpoint=0,
            counts={},
            attempts=0,
            last_error=None,
            lease_token=None,
            lease_until=None,
            started_at=None,
            finished_at=None,
            principal=principal_record(self.access.principal),
        )
        await emit(
            self.session,
            "contacts.import.queued",
            self.access.principal.tenant_id,
            {"import_id": str(job.id), "dry_run": run.dry_run, "mode": run.mode},
            actor=self.access.actor,
        )
        await self.session.refresh(job)
        return job_view(job)

    async def revert(self, job_id: uuid.UUID) -> dict[str, Any]:
        self.access.require_write()
        job = await self.visible(job_id, lock=True)
        if job.status != "completed" or job.dry_run:
            raise ProblemError(
                409, f"Only a completed import can be reverted (it is {job.status})."
            )
        await self.repo.set(
            job.id,
            status="revert_queued",
            checkpoint=job.chunk_count - 1,
            attempts=0,
            last_error=None,
            lease_token=None,
            lease_until=None,
            principal=principal_record(self.access.principal),
        )
        await emit(
            self.session,
            "contacts.import.queued",
            self.access.principal.tenant_id,
            {"import_id": str(job.id), "revert": True},
            actor=self.access.actor,
        )
        await self.session.refresh(job)
        return job_view(job)

    async def jobs(self, before: tuple[Any, Any] | None, limit: int) -> list[ImportJob]:
        """The caller's own jobs (owners/admins: all), like every other job read."""
        return await self.repo.jobs(self.access.actor, may_see_all_jobs(self.access), before, limit)

    async def error_rows(self, job_id: uuid.UUID) -> list[list[Any]]:
        job = await self.visible(job_id)
        rows: list[list[Any]] = []
        after = 0
        while True:
            batch = await self.repo.errors(job.id, after, 5000)
            if not batch:
                return rows
            rows += [[e.row_no, e.column or "", e.message, e.value or ""] for e in batch]
            after = batch[-1].id
