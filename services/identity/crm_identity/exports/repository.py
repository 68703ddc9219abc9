"""All queries on export jobs."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import ExportJob


class ExportJobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, job: ExportJob) -> None:
        self.session.add(job)
        await self.session.flush()

    async def refresh(self, job: ExportJob) -> None:
        await self.session.refresh(job)

    async def get(self, job_id: uuid.UUID) -> ExportJob | None:
        return await self.session.get(ExportJob, job_id)

    async def get_locked(self, job_id: uuid.UUID) -> ExportJob | None:
        return (
            await self.session.execute(
                select(ExportJob).where(ExportJob.id == job_id).with_for_update()
            )
        ).scalar_one_or_none()

    async def update(self, job_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(update(ExportJob).where(ExportJob.id == job_id).values(**values))

    async def complete(
        self, job_id: uuid.UUID, parts: dict[str, Any], archive_object: str, archive_bytes: int
    ) -> None:
        """The last part arrived and the zip is stored: the job is ready."""
        await self.update(
            job_id,
            parts=parts,
            status="ready",
            archive_object=archive_object,
            archive_bytes=archive_bytes,
            completed_at=func.now(),
        )
