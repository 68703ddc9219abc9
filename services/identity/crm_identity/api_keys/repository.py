"""All queries on API keys, and on the credential directory (platform schema) that maps a
key's or an OAuth client's public id to its tenant."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import ApiKey, CredentialDirectory


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, **values: Any) -> ApiKey:
        return (
            await self.session.execute(insert(ApiKey).values(**values).returning(ApiKey))
        ).scalar_one()

    async def newest_first(self) -> list[ApiKey]:
        rows = await self.session.execute(
            select(ApiKey).order_by(ApiKey.created_at.desc()).limit(500)
        )
        return list(rows.scalars())

    async def get(self, key_id: uuid.UUID) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def get_locked(self, key_id: uuid.UUID) -> ApiKey | None:
        return (
            await self.session.execute(select(ApiKey).where(ApiKey.id == key_id).with_for_update())
        ).scalar_one_or_none()

    async def live_created_by_locked(self, user_id: uuid.UUID) -> list[ApiKey]:
        return list(
            (
                await self.session.execute(
                    select(ApiKey)
                    .where(ApiKey.created_by == user_id, ApiKey.revoked_at.is_(None))
                    .with_for_update()
                )
            ).scalars()
        )

    async def mark_revoked(self, key_ids: list[uuid.UUID], at: datetime) -> None:
        await self.session.execute(
            update(ApiKey).where(ApiKey.id.in_(key_ids)).values(revoked_at=at)
        )

    async def touch_last_used(self, key_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at)
        )


class CredentialDirectoryRepository:
    """Platform schema: public id (API key or OAuth client) → tenant and credential row."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self, public_id: str, kind: str, tenant_id: uuid.UUID, credential_id: uuid.UUID
    ) -> None:
        await self.session.execute(
            insert(CredentialDirectory).values(
                public_id=public_id,
                kind=kind,
                tenant_id=tenant_id,
                credential_id=credential_id,
            )
        )

    async def get(self, public_id: str) -> CredentialDirectory | None:
        return await self.session.get(CredentialDirectory, public_id)
