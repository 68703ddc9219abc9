"""All SQL on import jobs (tenant-bound sessions); the lease mechanism's own SQL is
``crm_contacts.jobs.repository``."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from crm_contacts.models import ImportChunk, ImportJob, ImportRowError, ImportUpdate


class ImportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_job(self, values: dict[str, Any]) -> ImportJob:
        stmt = insert(ImportJob).values(**values).returning(ImportJob)
        return (await self.session.execute(stmt)).scalar_one()

    async def add_chunks(self, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), 50):
            await self.session.execute(insert(ImportChunk), rows[start : start + 50])

    async def get(self, job_id: uuid.UUID, *, lock: bool = False) -> ImportJob | None:
        stmt = select(ImportJob).where(ImportJob.id == job_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def jobs(
        self, actor: str, all_jobs: bool, before: tuple[Any, Any] | None, limit: int
    ) -> list[ImportJob]:
        stmt = select(ImportJob)
        if not all_jobs:
            # by the creating principal (user, API key or client), as ``visible`` decides
            stmt = stmt.where(ImportJob.created_by == actor)
        if before is not None:
            stmt = stmt.where(
                or_(
                    ImportJob.created_at < before[0],
                    (ImportJob.created_at == before[0]) & (ImportJob.id < before[1]),
                )
            )
        stmt = stmt.order_by(ImportJob.created_at.desc(), ImportJob.id.desc()).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def set(self, job_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id)
            .values(**values, updated_at=func.now())
            .execution_options(synchronize_session=False)
        )

    async def chunk(
        self, job_id: uuid.UUID, seq: int, *, with_data: bool = True
    ) -> ImportChunk | None:
        stmt = select(ImportChunk).where(ImportChunk.job_id == job_id, ImportChunk.seq == seq)
        if not with_data:
            stmt = stmt.options(defer(ImportChunk.data))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def chunk_data(self, job_id: uuid.UUID, seq: int) -> bytes | None:
        """A chunk's packed rows alone (the job runner reads the next chunk ahead)."""
        data = await self.session.scalar(
            select(ImportChunk.data).where(ImportChunk.job_id == job_id, ImportChunk.seq == seq)
        )
        return None if data is None else bytes(data)

    async def set_created(self, job_id: uuid.UUID, seq: int, ids: list[uuid.UUID]) -> None:
        await self.session.execute(
            update(ImportChunk)
            .where(ImportChunk.job_id == job_id, ImportChunk.seq == seq)
            .values(created_ids=ids)
        )

    async def add_errors(self, job_id: uuid.UUID, errors: list[Any]) -> None:
        if errors:
            await self.session.execute(
                insert(ImportRowError),
                [
                    {
                        "job_id": job_id,
                        "row_no": e.row_no,
                        "column": e.column,
                        "message": e.message[:2000],
                        "value": e.value,
                    }
                    for e in errors
                ],
            )

    async def clear_results(self, job_id: uuid.UUID) -> None:
        await self.session.execute(delete(ImportRowError).where(ImportRowError.job_id == job_id))

    async def errors(self, job_id: uuid.UUID, after: int, limit: int) -> list[ImportRowError]:
        stmt = (
            select(ImportRowError)
            .where(ImportRowError.job_id == job_id, ImportRowError.id > after)
            .order_by(ImportRowError.id)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def updates(self, job_id: uuid.UUID, seq: int) -> list[ImportUpdate]:
        stmt = select(ImportUpdate).where(ImportUpdate.job_id == job_id, ImportUpdate.seq == seq)
        return list((await self.session.execute(stmt)).scalars())

    async def delete_unchanged_created(self, ids: list[uuid.UUID], actor: str | None) -> list[Any]:
        """Soft-delete the records an import created that nobody changed since (version
        1): (id, owner_id, version) of each one deleted."""
        gone = await self.session.execute(
            text(
                "UPDATE contacts SET deleted_at = now(), version = version + 1,"
                " updated_at = now(), updated_by = :actor"
                " WHERE id = ANY(CAST(:ids AS uuid[])) AND version = 1 AND deleted_at IS NULL"
                " RETURNING id, owner_id, version"
            ),
            {"ids": ids, "actor": actor},
        )
        return list(gone.all())
