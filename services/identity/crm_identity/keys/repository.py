"""All queries on the signing keys (platform schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import SigningKey


class SigningKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self) -> None:
        """Serialise key creation and rotation (transaction-scoped advisory lock)."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('crm_signing_keys'))")
        )

    async def published(self, keep_after: datetime) -> list[SigningKey]:
        """Unretired keys and those retired after ``keep_after``, newest first."""
        return list(
            (
                await self.session.execute(
                    select(SigningKey)
                    .where(
                        or_(
                            SigningKey.retired_at.is_(None),
                            SigningKey.retired_at > keep_after,
                        )
                    )
                    .order_by(SigningKey.created_at.desc())
                )
            ).scalars()
        )

    async def has_active(self) -> bool:
        existing = (
            await self.session.execute(
                select(SigningKey.kid).where(SigningKey.retired_at.is_(None))
            )
        ).first()
        return existing is not None

    async def insert(self, row: dict[str, Any], *, if_absent: bool = False) -> None:
        stmt = pg_insert(SigningKey).values(**row)
        if if_absent:
            stmt = stmt.on_conflict_do_nothing()
        await self.session.execute(stmt)

    async def retire_active(self, at: datetime) -> None:
        await self.session.execute(
            update(SigningKey).where(SigningKey.retired_at.is_(None)).values(retired_at=at)
        )
