"""Queries of custom field definitions."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import CustomFieldDefinition


class FieldRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self, entity: str | None = None) -> list[CustomFieldDefinition]:
        stmt = select(CustomFieldDefinition).order_by(
            CustomFieldDefinition.entity, CustomFieldDefinition.position, CustomFieldDefinition.key
        )
        if entity is not None:
            stmt = stmt.where(CustomFieldDefinition.entity == entity)
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, field_id: uuid.UUID) -> CustomFieldDefinition | None:
        return await self.session.get(CustomFieldDefinition, field_id)

    async def exists(self, entity: str, key: str) -> bool:
        stmt = select(CustomFieldDefinition.id).where(
            CustomFieldDefinition.entity == entity, CustomFieldDefinition.key == key
        )
        return (await self.session.execute(stmt)).first() is not None

    async def insert(self, **values: Any) -> CustomFieldDefinition:
        stmt = insert(CustomFieldDefinition).values(id=uuid.uuid4(), **values)
        return (await self.session.execute(stmt.returning(CustomFieldDefinition))).scalar_one()

    async def update(self, field_id: uuid.UUID, **values: Any) -> CustomFieldDefinition:
        stmt = (
            update(CustomFieldDefinition)
            .where(CustomFieldDefinition.id == field_id)
            .values(**values, version=CustomFieldDefinition.version + 1, updated_at=func.now())
            .returning(CustomFieldDefinition)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one()
