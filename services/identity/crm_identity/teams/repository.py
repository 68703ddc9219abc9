"""All queries on teams and their members."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import Team, TeamMember, User


class TeamRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def member_ids(self, team_id: uuid.UUID) -> list[uuid.UUID]:
        return list(
            (
                await self.session.execute(
                    select(TeamMember.user_id)
                    .where(TeamMember.team_id == team_id)
                    .order_by(TeamMember.user_id)
                )
            ).scalars()
        )

    async def get(self, team_id: uuid.UUID) -> Team | None:
        return await self.session.get(Team, team_id)

    async def existing_ids(self, team_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        return set(
            (await self.session.execute(select(Team.id).where(Team.id.in_(team_ids)))).scalars()
        )

    async def name_taken(self, name: str, exclude: uuid.UUID | None = None) -> bool:
        stmt = select(Team.id).where(func.lower(Team.name) == name.lower())
        if exclude is not None:
            stmt = stmt.where(Team.id != exclude)
        return (await self.session.execute(stmt)).first() is not None

    async def existing_user_ids(self, user_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        return set(
            (await self.session.execute(select(User.id).where(User.id.in_(user_ids)))).scalars()
        )

    async def user_exists(self, user_id: uuid.UUID) -> bool:
        return await self.session.get(User, user_id) is not None

    async def insert(self, name: str) -> Team:
        return (
            await self.session.execute(
                insert(Team).values(id=uuid.uuid4(), name=name).returning(Team)
            )
        ).scalar_one()

    async def insert_member(self, team_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self.session.execute(insert(TeamMember).values(team_id=team_id, user_id=user_id))

    async def add_member(self, team_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Add a member; already one: nothing happens."""
        await self.session.execute(
            pg_insert(TeamMember).values(team_id=team_id, user_id=user_id).on_conflict_do_nothing()
        )

    async def remove_member(self, team_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        removed = (
            await self.session.execute(
                delete(TeamMember)
                .where(TeamMember.team_id == team_id, TeamMember.user_id == user_id)
                .returning(TeamMember.user_id)
            )
        ).first()
        return removed is not None

    async def list(self) -> list[Team]:
        return list((await self.session.execute(select(Team).order_by(Team.name))).scalars())

    async def rename(self, team_id: uuid.UUID, name: str) -> Team:
        return (
            await self.session.execute(
                update(Team)
                .where(Team.id == team_id)
                .values(name=name, version=Team.version + 1, updated_at=func.now())
                .returning(Team)
            )
        ).scalar_one()

    async def delete(self, team_id: uuid.UUID) -> None:
        await self.session.execute(delete(Team).where(Team.id == team_id))
