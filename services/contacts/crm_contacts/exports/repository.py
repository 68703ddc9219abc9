"""All SQL on export jobs and their files (tenant-bound sessions); the lease
mechanism's own SQL is ``crm_contacts.jobs.repository``."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.jobs.repository import lease_expiry
from crm_contacts.models import ExportChunk, ExportJob


class ExportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_job(self, values: dict[str, Any]) -> ExportJob:
        stmt = insert(ExportJob).values(**values).returning(ExportJob)
        return (await self.session.execute(stmt)).scalar_one()

    async def get(self, export_id: uuid.UUID) -> ExportJob | None:
        return (
            await self.session.execute(select(ExportJob).where(ExportJob.id == export_id))
        ).scalar_one_or_none()

    async def jobs(self, actor: str | None, limit: int) -> list[ExportJob]:
        stmt = (
            select(ExportJob)
            .where(ExportJob.created_by == actor)
            .order_by(ExportJob.created_at.desc(), ExportJob.id.desc())
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def add_chunk(self, export_id: uuid.UUID, seq: int, data: bytes) -> None:
        await self.session.execute(
            insert(ExportChunk).values(export_id=export_id, seq=seq, data=data)
        )

    async def chunk_data(self, export_id: uuid.UUID, seq: int) -> bytes | None:
        return await self.session.scalar(
            select(ExportChunk.data).where(
                ExportChunk.export_id == export_id, ExportChunk.seq == seq
            )
        )

    async def advance(
        self, job_id: uuid.UUID, values: dict[str, Any], *, done: bool, lease_seconds: int
    ) -> None:
        """A page written: the job's new cursor and counts (``values``); a finished job
        gives up its lease, a running one renews it."""
        values = {**values, "updated_at": func.now()}
        if done:
            values.update(lease_token=None, lease_until=None, finished_at=func.now())
        else:
            values["lease_until"] = lease_expiry(lease_seconds)
        await self.session.execute(
            ExportJob.__table__.update().where(ExportJob.id == job_id).values(**values)
        )
