"""Queries on users, seats and the login directory."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import (
    Invitation,
    LoginDirectory,
    RefreshToken,
    TeamMember,
    Tenant,
    User,
)


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID, *, lock: bool = False) -> User | None:
        stmt = select(User).where(User.id == user_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def by_email(self, email: str) -> User | None:
        return (
            await self.session.execute(select(User).where(User.email == email))
        ).scalar_one_or_none()

    async def page(
        self,
        limit: int,
        after: tuple[str, uuid.UUID] | None,
        status: str | None,
        role: str | None,
    ) -> list[User]:
        stmt = select(User).order_by(User.email, User.id).limit(limit)
        if after is not None:
            stmt = stmt.where(tuple_(User.email, User.id) > tuple_(*after))
        if status is not None:
            stmt = stmt.where(User.status == status)
        if role is not None:
            stmt = stmt.where(User.roles.any(role))  # type: ignore[arg-type]
        return list((await self.session.execute(stmt)).scalars())

    async def team_ids(self, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
        found: dict[uuid.UUID, list[uuid.UUID]] = {u: [] for u in user_ids}
        if not user_ids:
            return found
        rows = await self.session.execute(
            select(TeamMember.user_id, TeamMember.team_id).where(TeamMember.user_id.in_(user_ids))
        )
        for user_id, team_id in rows.all():
            found[user_id].append(team_id)
        return found

    async def insert(self, **values: Any) -> User:
        return (
            await self.session.execute(insert(User).values(**values).returning(User))
        ).scalar_one()

    async def update(self, user_id: uuid.UUID, **values: Any) -> User:
        return (
            await self.session.execute(
                update(User)
                .where(User.id == user_id)
                .values(updated_at=func.now(), version=User.version + 1, **values)
                .returning(User)
            )
        ).scalar_one()

    async def touch_last_login(self, user_id: uuid.UUID) -> None:
        """Record a login (not a change of the user: no version bump)."""
        await self.session.execute(
            update(User).where(User.id == user_id).values(last_login_at=func.now())
        )

    async def revoke_refresh_tokens(self, user_id: uuid.UUID) -> None:
        """End every live session of the user."""
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )

    async def count_active_owners(self) -> int:
        return int(
            (
                await self.session.execute(
                    select(func.count()).where(User.status == "active", User.roles.any("owner"))  # type: ignore[arg-type]
                )
            ).scalar_one()
        )

    # -- seats -----------------------------------------------------------------------

    async def lock_seat_limit(self, tenant_id: uuid.UUID) -> int:
        """The tenant's seat limit, locking its registry row: seat changes serialise on it."""
        return int(
            (
                await self.session.execute(
                    select(Tenant.seats).where(Tenant.id == tenant_id).with_for_update()
                )
            ).scalar_one()
        )

    async def seat_limit(self, tenant_id: uuid.UUID) -> int:
        return int(
            (
                await self.session.execute(select(Tenant.seats).where(Tenant.id == tenant_id))
            ).scalar_one()
        )

    async def seats_used(self) -> tuple[int, int]:
        active = (
            await self.session.execute(select(func.count()).where(User.status == "active"))
        ).scalar_one()
        pending = (
            await self.session.execute(
                select(func.count()).where(
                    Invitation.status == "pending", Invitation.expires_at > datetime.now(UTC)
                )
            )
        ).scalar_one()
        return int(active), int(pending)

    # -- login directory ---------------------------------------------------------------

    async def add_login(self, email: str, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self.session.execute(
            pg_insert(LoginDirectory)
            .values(email=email, tenant_id=tenant_id, user_id=user_id)
            .on_conflict_do_nothing()
        )

    async def remove_login(self, email: str, tenant_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(LoginDirectory).where(
                LoginDirectory.email == email, LoginDirectory.tenant_id == tenant_id
            )
        )

    async def tenants_for_email(self, email: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
        rows = await self.session.execute(
            select(LoginDirectory.tenant_id, LoginDirectory.user_id).where(
                LoginDirectory.email == email
            )
        )
        return [(t, u) for t, u in rows.all()]
