"""All queries on invitations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import Invitation


class InvitationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def has_pending(self, email: str) -> bool:
        """An unexpired pending invitation for this address exists."""
        pending = (
            await self.session.execute(
                select(Invitation.id).where(
                    Invitation.email == email,
                    Invitation.status == "pending",
                    Invitation.expires_at > func.now(),
                )
            )
        ).first()
        return pending is not None

    async def insert(self, **values: Any) -> Invitation:
        return (
            await self.session.execute(insert(Invitation).values(**values).returning(Invitation))
        ).scalar_one()

    async def list(self, status: str | None) -> list[Invitation]:
        stmt = select(Invitation).order_by(Invitation.created_at.desc()).limit(500)
        if status == "expired":
            stmt = stmt.where(Invitation.status == "pending", Invitation.expires_at <= func.now())
        elif status == "pending":
            stmt = stmt.where(Invitation.status == "pending", Invitation.expires_at > func.now())
        elif status is not None:
            stmt = stmt.where(Invitation.status == status)
        return list((await self.session.execute(stmt)).scalars())

    async def get_locked(self, invitation_id: uuid.UUID) -> Invitation | None:
        return (
            await self.session.execute(
                select(Invitation).where(Invitation.id == invitation_id).with_for_update()
            )
        ).scalar_one_or_none()

    async def by_token_hash_locked(self, token_hash: str) -> Invitation | None:
        return (
            await self.session.execute(
                select(Invitation).where(Invitation.token_hash == token_hash).with_for_update()
            )
        ).scalar_one_or_none()

    async def renew(
        self, invitation_id: uuid.UUID, token_hash: str, expires_at: datetime
    ) -> Invitation:
        """A new link: new token, one more send, a new expiry."""
        return (
            await self.session.execute(
                update(Invitation)
                .where(Invitation.id == invitation_id)
                .values(
                    token_hash=token_hash,
                    sent_count=Invitation.sent_count + 1,
                    expires_at=expires_at,
                    updated_at=func.now(),
                )
                .returning(Invitation)
            )
        ).scalar_one()

    async def set_revoked(self, invitation_id: uuid.UUID) -> None:
        await self.session.execute(
            update(Invitation)
            .where(Invitation.id == invitation_id)
            .values(status="revoked", updated_at=func.now())
        )

    async def set_accepted(self, invitation_id: uuid.UUID) -> None:
        await self.session.execute(
            update(Invitation)
            .where(Invitation.id == invitation_id)
            .values(status="accepted", accepted_at=func.now(), updated_at=func.now())
        )
