"""Reads of field history and the access audit (both written by the record services)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import AccessAudit, FieldChange


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def exists(self, model: Any, record_id: uuid.UUID) -> bool:
        """Whether the record exists in this tenant, deleted or not."""
        found = await self.session.scalar(select(model.id).where(model.id == record_id))
        return found is not None

    async def history(
        self, entity: str, record_id: uuid.UUID, before: int | None, limit: int
    ) -> list[FieldChange]:
        stmt = select(FieldChange).where(
            FieldChange.entity == entity, FieldChange.record_id == record_id
        )
        if before is not None:
            stmt = stmt.where(FieldChange.id < before)
        stmt = stmt.order_by(FieldChange.id.desc()).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def access_log(
        self, action: str | None, before: int | None, limit: int
    ) -> list[AccessAudit]:
        stmt = select(AccessAudit)
        if action is not None:
            stmt = stmt.where(AccessAudit.action == action)
        if before is not None:
            stmt = stmt.where(AccessAudit.id < before)
        stmt = stmt.order_by(AccessAudit.id.desc()).limit(limit)
        return list((await self.session.execute(stmt)).scalars())
