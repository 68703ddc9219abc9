"""Queries of the members/teams read model and of team rules."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import Member, Team, TeamMembership, TeamRule


class MemberRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert_member(
        self,
        user_id: uuid.UUID,
        *,
        roles: list[str] | None = None,
        active: bool | None = None,
        email: str | None = None,
    ) -> None:
        values: dict[str, object] = {"user_id": user_id, "updated_at": func.now()}
        if roles is not None:
            values["roles"] = roles
        if email is not None:
            values["email"] = email.strip().lower()
        if active is not None:
            values["active"] = active
        stmt = insert(Member).values(**values)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Member.user_id],
                set_={k: stmt.excluded[k] for k in values if k != "user_id"},
            )
        )

    async def active_members(self, user_ids: set[uuid.UUID]) -> set[uuid.UUID]:
        if not user_ids:
            return set()
        rows = await self.session.execute(
            select(Member.user_id).where(Member.user_id.in_(user_ids), Member.active)
        )
        return set(rows.scalars())

    async def add_team(self, team_id: uuid.UUID) -> None:
        await self.session.execute(insert(Team).values(team_id=team_id).on_conflict_do_nothing())

    async def team_exists(self, team_id: uuid.UUID) -> bool:
        return (
            await self.session.scalar(select(Team.team_id).where(Team.team_id == team_id))
        ) is not None

    async def join(self, team_id: uuid.UUID, user_ids: list[uuid.UUID]) -> None:
        await self.add_team(team_id)
        if user_ids:
            await self.session.execute(
                insert(TeamMembership)
                .values([{"team_id": team_id, "user_id": u} for u in user_ids])
                .on_conflict_do_nothing()
            )

    async def leave(self, team_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(TeamMembership).where(
                TeamMembership.team_id == team_id, TeamMembership.user_id == user_id
            )
        )

    async def drop_team(self, team_id: uuid.UUID) -> None:
        await self.session.execute(delete(TeamMembership).where(TeamMembership.team_id == team_id))
        await self.session.execute(delete(TeamRule).where(TeamRule.team_id == team_id))
        await self.session.execute(delete(Team).where(Team.team_id == team_id))

    async def teammates(self, user_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
        """(user id, rule access) of every member of the user's teams that have a team
        rule (the user included)."""
        mine = select(TeamMembership.team_id).where(TeamMembership.user_id == user_id)
        rows = (
            await self.session.execute(
                select(TeamMembership.user_id, TeamRule.access)
                .join(TeamRule, TeamRule.team_id == TeamMembership.team_id)
                .where(TeamMembership.team_id.in_(mine))
            )
        ).all()
        return [(r.user_id, r.access) for r in rows]

    async def rules(self) -> list[TeamRule]:
        return list(
            (await self.session.execute(select(TeamRule).order_by(TeamRule.created_at))).scalars()
        )

    async def set_rule(self, team_id: uuid.UUID, access: str) -> TeamRule:
        stmt = insert(TeamRule).values(team_id=team_id, access=access)
        return (
            await self.session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[TeamRule.team_id], set_={"access": stmt.excluded.access}
                ).returning(TeamRule)
            )
        ).scalar_one()

    async def delete_rule(self, team_id: uuid.UUID) -> bool:
        result = await self.session.execute(delete(TeamRule).where(TeamRule.team_id == team_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def team_members(self, team_id: uuid.UUID) -> list[uuid.UUID]:
        return list(
            (
                await self.session.execute(
                    select(TeamMembership.user_id)
                    .where(TeamMembership.team_id == team_id)
                    .order_by(TeamMembership.user_id)
                )
            ).scalars()
        )
