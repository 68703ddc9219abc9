"""Queries of custom field definitions, and of the tenant's data key that encrypts
sensitive custom field values (``crm_contacts.crypto``)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import CustomFieldDefinition, EncryptionKey


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


class DataKeyRepository:
    """The tenant's one wrapped data key (row 1 of ``encryption_keys``)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def wrapped_key(self) -> bytes | None:
        return await self.session.scalar(
            select(EncryptionKey.wrapped_key).where(EncryptionKey.id == 1)
        )

    async def add_if_none(self, wrapped: bytes) -> None:
        """Store this key unless one is stored already (a concurrent first writer)."""
        await self.session.execute(
            pg_insert(EncryptionKey).values(id=1, wrapped_key=wrapped).on_conflict_do_nothing()
        )
