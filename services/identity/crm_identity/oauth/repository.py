"""All queries on OAuth2 clients."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import OAuthClient


class OAuthClientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, **values: Any) -> OAuthClient:
        return (
            await self.session.execute(insert(OAuthClient).values(**values).returning(OAuthClient))
        ).scalar_one()

    async def newest_first(self) -> list[OAuthClient]:
        rows = await self.session.execute(
            select(OAuthClient).order_by(OAuthClient.created_at.desc())
        )
        return list(rows.scalars())

    async def get(self, row_id: uuid.UUID, *, lock: bool = False) -> OAuthClient | None:
        return await self.session.get(OAuthClient, row_id, with_for_update=lock or None)

    async def live_created_by_locked(self, user_id: uuid.UUID) -> list[OAuthClient]:
        return list(
            (
                await self.session.execute(
                    select(OAuthClient)
                    .where(OAuthClient.created_by == user_id, OAuthClient.revoked_at.is_(None))
                    .with_for_update()
                )
            ).scalars()
        )

    async def mark_revoked(self, row_ids: list[uuid.UUID], at: datetime) -> None:
        await self.session.execute(
            update(OAuthClient).where(OAuthClient.id.in_(row_ids)).values(revoked_at=at)
        )
