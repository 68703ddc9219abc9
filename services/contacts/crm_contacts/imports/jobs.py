"""One step of an import job: a chunk imported (or validated), or a chunk reverted.

Each step runs in one tenant transaction that also advances the job's checkpoint
(and renews its lease); a worker that dies mid-step leaves nothing behind and the
next holder of the lease continues from the checkpoint.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.contacts.service import ContactService
from crm_contacts.fields.values import FieldSpec
from crm_contacts.imports import csvfile
from crm_contacts.imports.events import announce_batch, batch_record
from crm_contacts.imports.processor import ContactImporter
from crm_contacts.imports.repository import ImportRepository
from crm_contacts.imports.rows import DryState, Options, Prepared
from crm_contacts.jobs.principal import record_context
from crm_contacts.jobs.repository import JobRepository, lease_expiry
from crm_contacts.jobs.runner import JobKind
from crm_contacts.models import Contact, ImportJob
from crm_contacts.records.service import REDACTED
from crm_contacts.settings import ContactsSettings
from crm_lib.events import emit

#: Test hook: called with (job id, chunk seq) inside a chunk's transaction, after the
#: chunk is written and before the checkpoint moves (raise to simulate a crash).
FAULTS: dict[uuid.UUID, Callable[[uuid.UUID, int], Awaitable[None]]] = {}


def _yield_gil() -> None:
    time.sleep(0)  # releases the GIL: a waiting event loop thread runs first


class Lookahead:
    """The next chunk of a running import, parsed and validated in a worker thread while
    the current chunk's statements are in flight (the CPU work of chunk N+1 overlaps the
    database work of chunk N). Nothing is written ahead: each chunk is still looked up,
    written and checkpointed in its own transaction, in order.

    ``arm`` names the next chunk; ``launch`` starts the thread, which the importer does
    when its writes begin (the COPY is the long wait: starting earlier would slow the
    duplicate lookups, which need the interpreter to encode their parameters)."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.task: asyncio.Future[Prepared] | None = None
        self.pending: Callable[[], Prepared] | None = None

    def arm(
        self, seq: int, importer: ContactImporter, data: bytes, specs: Mapping[str, FieldSpec]
    ) -> None:
        self.cancel()

        def work() -> Prepared:
            return importer.prepare(csvfile.unpack(data), specs, _yield_gil)

        self.seq = seq
        self.pending = work

    def launch(self) -> None:
        work, self.pending = self.pending, None
        if work is not None:
            self.task = asyncio.ensure_future(asyncio.to_thread(work))

    async def take(self, seq: int) -> Prepared | None:
        self.launch()
        task, self.task = self.task, None
        if task is None or self.seq != seq:
            if task is not None:
                task.cancel()
            return None
        try:
            return await task
        except Exception:  # prepared again in the step itself
            return None

    def cancel(self) -> None:
        self.pending = None
        if self.task is not None:
            self.task.cancel()
            self.task = None


async def import_step(
    session: AsyncSession,
    job: ImportJob,
    settings: ContactsSettings,
    dry: DryState | None,
    ahead: Lookahead | None = None,
) -> bool:
    """Process the chunk at the checkpoint; True when the job is finished."""
    repo = ImportRepository(session)
    if job.status == "queued":
        await repo.set_running(job.id)
    if job.checkpoint >= job.chunk_count:
        await _finish_import(session, job)
        return True
    prepared = await ahead.take(job.checkpoint) if ahead is not None else None
    chunk = await repo.chunk(job.id, job.checkpoint, with_data=prepared is None)
    assert chunk is not None
    ctx = await record_context(session, job.principal, settings)
    svc = ContactService(session, ctx)
    importer = ContactImporter(
        session,
        svc,
        job.id,
        job.columns,
        job.mapping,
        Options.of(job.options),
        emit_record_events=job.total_rows <= settings.import_record_events_max,
    )
    if ahead is not None and job.checkpoint + 1 < job.chunk_count:
        following = await repo.chunk_data(job.id, job.checkpoint + 1)
        if following is not None:
            ahead.arm(job.checkpoint + 1, importer, following, await svc.specs())
    rows = prepared.rows if prepared is not None else csvfile.unpack(chunk.data)
    result = await importer.process(
        chunk.seq,
        rows,
        dry=dry,
        prepared=prepared,
        writing=ahead.launch if ahead is not None else None,
    )
    if ahead is not None:
        ahead.launch()
    await repo.add_errors(job.id, result.errors)
    if result.created_ids:
        await repo.set_created(job.id, chunk.seq, result.created_ids)
    fault = FAULTS.get(job.id)
    if fault is not None:
        await fault(job.id, chunk.seq)
    counts = dict(job.counts)
    counts["processed"] = int(counts.get("processed", 0)) + chunk.row_count
    for key in ("created", "updated", "unchanged", "failed"):
        counts[key] = int(counts.get(key, 0)) + getattr(result, key)
    await repo.set(
        job.id,
        checkpoint=job.checkpoint + 1,
        counts=counts,
        lease_until=lease_expiry(settings.job_lease_seconds),
        last_error=None,
    )
    return False


async def _finish_import(session: AsyncSession, job: ImportJob) -> None:
    repo = ImportRepository(session)
    jobs = JobRepository(session)
    status = "validated" if job.dry_run else "completed"
    await repo.finish(job.id, status)
    counts = {k: int(job.counts.get(k, 0)) for k in ("created", "updated", "unchanged", "failed")}
    if job.dry_run:
        return
    await jobs.audit(
        actor=job.created_by,
        action="import",
        entity="contact",
        record_count=counts["created"] + counts["updated"],
        details={"import_id": str(job.id), "filename": job.filename, **counts},
    )
    await emit(
        session,
        "contacts.import.completed",
        job.principal["tenant_id"],
        {
            "import_id": str(job.id),
            "entity": job.entity,
            "mode": job.options.get("mode"),
            "total": job.total_rows,
            **counts,
        },
        actor=job.created_by,
    )


async def revert_step(session: AsyncSession, job: ImportJob, settings: ContactsSettings) -> bool:
    """Undo the chunk at the checkpoint (last chunk first); True when done."""
    repo = ImportRepository(session)
    if job.status == "revert_queued":
        await repo.set(job.id, status="reverting")
    if job.checkpoint < 0:
        await repo.finish(job.id, "reverted")
        await JobRepository(session).audit(
            actor=job.principal.get("subject"),
            action="import_revert",
            entity="contact",
            record_count=int(job.counts.get("reverted", 0)),
            details={
                "import_id": str(job.id),
                "skipped": int(job.counts.get("revert_skipped", 0)),
            },
        )
        await emit(
            session,
            "contacts.import.reverted",
            job.principal["tenant_id"],
            {
                "import_id": str(job.id),
                "reverted": int(job.counts.get("reverted", 0)),
                "skipped": int(job.counts.get("revert_skipped", 0)),
            },
            actor=job.principal.get("subject"),
        )
        return True
    ctx = await record_context(session, job.principal, settings)
    svc = ContactService(session, ctx)
    events = job.total_rows <= settings.import_record_events_max
    reverted = skipped = 0
    #: Big imports: the chunk's undone records as batched ``import_reverted`` events.
    batch: list[msgspec.Raw] = []
    # Updates first: restore each before-image if nobody changed the record since.
    for change in await repo.updates(job.id, job.checkpoint):
        row = await svc.repo.get(change.record_id, lock=True)
        if row is None or row.version != change.version_after:
            skipped += 1
            continue
        values = _restore_values(change.before)
        if events:
            await svc.apply_update(row, values, reason="revert")
        else:
            restored = await _quiet_update(svc, row, values)
            if restored is not None:
                batch.append(restored)
        reverted += 1
    chunk = await repo.chunk(job.id, job.checkpoint)
    if chunk is not None and chunk.created_ids:
        deleted = await repo.delete_unchanged_created(list(chunk.created_ids), ctx.access.actor)
        skipped += len(chunk.created_ids) - len(deleted)
        reverted += len(deleted)
        await svc.repo.add_changes(
            [
                {
                    "entity": "contact",
                    "record_id": r.id,
                    "field": "deleted",
                    "old_value": False,
                    "new_value": True,
                    "reason": "revert",
                    "actor": ctx.access.actor,
                }
                for r in deleted
            ]
        )
        if events:
            for r in deleted:
                await emit(
                    session,
                    "contacts.contact.deleted",
                    job.principal["tenant_id"],
                    {
                        "contact_id": str(r.id),
                        "owner_id": str(r.owner_id) if r.owner_id else None,
                        "version": r.version,
                        "import_id": str(job.id),
                    },
                    actor=ctx.access.actor,
                )
        else:
            batch += [batch_record(r.id, r.owner_id, r.version, "deleted", None) for r in deleted]
    if batch:
        await announce_batch(
            session,
            "contacts.contact.import_reverted",
            job.principal["tenant_id"],
            job.id,
            ctx.access.actor,
            batch,
        )
    counts = dict(job.counts)
    counts["reverted"] = int(counts.get("reverted", 0)) + reverted
    counts["revert_skipped"] = int(counts.get("revert_skipped", 0)) + skipped
    await repo.set(
        job.id,
        checkpoint=job.checkpoint - 1,
        counts=counts,
        lease_until=lease_expiry(settings.job_lease_seconds),
    )
    return False


def _restore_values(before: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in before.items():
        if key in ("company_id", "owner_id") and value is not None:
            out[key] = uuid.UUID(value)
        elif key == "tag_ids":
            out[key] = [uuid.UUID(v) for v in value]
        else:
            out[key] = value
    return out


async def _quiet_update(
    svc: ContactService, row: Contact, values: dict[str, Any]
) -> msgspec.Raw | None:
    """A restore without a per-record event (big imports): history, and the record for
    the chunk's batched ``contacts.contact.import_reverted`` event (None: no change)."""
    before = svc.snapshot(row)
    values["updated_by"] = svc.access.actor
    updated = await svc.repo.update(row.id, values)
    changes = svc.diff(before, svc.snapshot(updated))
    if not changes:
        return None
    await svc.record_history(row.id, changes, "revert")
    fields = {
        key: REDACTED if key.startswith("custom_fields.") and _redacted(c["to"]) else c["to"]
        for key, c in changes.items()
    }
    return batch_record(updated.id, updated.owner_id, updated.version, "updated", fields)


def _redacted(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(REDACTED)


async def _restart_dry_run(session: AsyncSession, job: ImportJob) -> None:
    repo = ImportRepository(session)
    if job.checkpoint > 0 or job.counts:
        await repo.clear_results(job.id)
        await repo.set(job.id, checkpoint=0, counts={})
        job.checkpoint = 0
        job.counts = {}


class ImportSteps:
    """One leased run of an import job (or its revert): a real run reads the next chunk
    ahead (``Lookahead``); a dry run remembers earlier rows in memory, so a resumed
    one starts over (it wrote nothing but its report)."""

    def __init__(self, settings: ContactsSettings) -> None:
        self.settings = settings
        self.ahead = Lookahead()
        self.dry: DryState | None = None
        self.first = True

    async def step(self, session: AsyncSession, job: ImportJob) -> bool:
        if job.status in ("revert_queued", "reverting"):
            done = await revert_step(session, job, self.settings)
        else:
            if job.dry_run:
                if self.first:
                    self.dry = DryState()
                    await _restart_dry_run(session, job)
                assert self.dry is not None
            done = await import_step(session, job, self.settings, self.dry, self.ahead)
        self.first = False
        return done

    def close(self) -> None:
        self.ahead.cancel()


IMPORT_JOBS = JobKind(model=ImportJob, queued_event="contacts.import.queued", start=ImportSteps)
