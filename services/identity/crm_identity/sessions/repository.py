"""All queries on refresh tokens and on the login directory's tenant choice."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import LoginDirectory, RefreshToken, Tenant


class SessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- platform schema ---------------------------------------------------------------

    async def account_for(
        self, email: str, slug: str | None, closed_states: Collection[str]
    ) -> tuple[Tenant, uuid.UUID] | None:
        """The tenant and user ``email`` logs into: in tenant ``slug``, else the oldest
        open one (closed tenants last)."""
        stmt = (
            select(Tenant, LoginDirectory.user_id)
            .join(LoginDirectory, LoginDirectory.tenant_id == Tenant.id)
            .where(LoginDirectory.email == email)
            .order_by(
                case((Tenant.status.in_(closed_states), 1), else_=0),
                Tenant.created_at,
                Tenant.id,
            )
            .limit(1)
        )
        if slug is not None:
            stmt = stmt.where(Tenant.slug == slug)
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1]) if row else None

    # -- tenant schema: refresh tokens ---------------------------------------------------

    async def insert_refresh_token(
        self, user_id: uuid.UUID, family_id: uuid.UUID, token_hash: str, expires_at: datetime
    ) -> None:
        await self.session.execute(
            insert(RefreshToken).values(
                id=uuid.uuid4(),
                user_id=user_id,
                family_id=family_id,
                token_hash=token_hash,
                expires_at=expires_at,
            )
        )

    async def refresh_token_locked(self, token_hash: str) -> RefreshToken | None:
        return (
            await self.session.execute(
                select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
            )
        ).scalar_one_or_none()

    async def revoke_family(self, family_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=at)
        )

    async def mark_rotated(self, token_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(RefreshToken).where(RefreshToken.id == token_id).values(rotated_at=at)
        )

    async def family_of(self, token_hash: str, user_id: uuid.UUID) -> uuid.UUID | None:
        return (
            await self.session.execute(
                select(RefreshToken.family_id).where(
                    RefreshToken.token_hash == token_hash,
                    RefreshToken.user_id == user_id,
                )
            )
        ).scalar_one_or_none()

    async def revoke_user_tokens(
        self, user_id: uuid.UUID, family_id: uuid.UUID | None = None
    ) -> None:
        """Revoke the user's live refresh tokens (of one family, or all of them)."""
        stmt = update(RefreshToken).where(
            RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
        )
        if family_id is not None:
            stmt = stmt.where(RefreshToken.family_id == family_id)
        await self.session.execute(stmt.values(revoked_at=func.now()))
