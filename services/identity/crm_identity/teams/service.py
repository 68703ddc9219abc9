"""Teams and their members (the basis of team visibility rules in other services)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import Team, TeamMember, User
from crm_identity.roles import MANAGERS
from crm_identity.teams import schemas
from crm_lib.auth import Principal
from crm_lib.events import emit
from crm_lib.http import ProblemError, require_version


class TeamService:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def _require_reader(self) -> None:
        """Members read teams; API keys and OAuth clients need ``teams:read`` or
        ``users:read`` (a team lists its members' user ids)."""
        principal = self.principal
        if principal.kind != "user" and not (
            principal.allows("teams:read") or principal.allows("users:read")
        ):
            raise ProblemError(403, "The token lacks the scope teams:read (or users:read).")

    def _require_manager(self) -> None:
        if not self.principal.has_role(*MANAGERS):
            raise ProblemError(403, "Only owners and admins manage teams.")

    async def _view(self, team: Team) -> schemas.Team:
        members = list(
            (
                await self.session.execute(
                    select(TeamMember.user_id)
                    .where(TeamMember.team_id == team.id)
                    .order_by(TeamMember.user_id)
                )
            ).scalars()
        )
        return schemas.Team(
            team.id, team.name, members, team.created_at, team.updated_at, team.version
        )

    async def _get(self, team_id: uuid.UUID) -> Team:
        team = await self.session.get(Team, team_id)
        if team is None:
            raise ProblemError(404, "No such team.")
        return team

    async def _name_free(self, name: str, exclude: uuid.UUID | None = None) -> None:
        stmt = select(Team.id).where(func.lower(Team.name) == name.lower())
        if exclude is not None:
            stmt = stmt.where(Team.id != exclude)
        if (await self.session.execute(stmt)).first() is not None:
            raise ProblemError(409, f"A team named '{name}' already exists.")

    async def _check_users(self, user_ids: list[uuid.UUID]) -> None:
        if not user_ids:
            return
        found = set(
            (await self.session.execute(select(User.id).where(User.id.in_(user_ids)))).scalars()
        )
        if missing := [str(u) for u in user_ids if u not in found]:
            raise ProblemError(
                422,
                "Unknown user(s).",
                title="Validation failed",
                errors=[{"field": "member_ids", "message": ", ".join(missing)}],
            )

    async def create(self, data: schemas.TeamCreate) -> schemas.Team:
        self._require_manager()
        name = data.name.strip()
        await self._name_free(name)
        members = sorted(set(data.member_ids))
        await self._check_users(members)
        team = (
            await self.session.execute(
                insert(Team).values(id=uuid.uuid4(), name=name).returning(Team)
            )
        ).scalar_one()
        for user_id in members:
            await self.session.execute(insert(TeamMember).values(team_id=team.id, user_id=user_id))
        await emit(
            self.session,
            "identity.team.created",
            self.principal.tenant_id,
            {"team_id": str(team.id), "name": name, "member_ids": [str(m) for m in members]},
            actor=self.principal.subject,
        )
        return await self._view(team)

    async def list(self) -> list[schemas.Team]:
        self._require_reader()
        teams = (await self.session.execute(select(Team).order_by(Team.name))).scalars()
        return [await self._view(t) for t in teams]

    async def get(self, team_id: uuid.UUID) -> schemas.Team:
        self._require_reader()
        return await self._view(await self._get(team_id))

    async def rename(
        self, team_id: uuid.UUID, data: schemas.TeamUpdate, if_match: int | None
    ) -> schemas.Team:
        self._require_manager()
        team = await self._get(team_id)
        require_version(if_match, team.version, "team")
        await self._name_free(data.name.strip(), exclude=team_id)
        team = (
            await self.session.execute(
                update(Team)
                .where(Team.id == team_id)
                .values(name=data.name.strip(), version=Team.version + 1, updated_at=func.now())
                .returning(Team)
            )
        ).scalar_one()
        return await self._view(team)

    async def delete(self, team_id: uuid.UUID) -> None:
        self._require_manager()
        await self._get(team_id)
        await self.session.execute(delete(Team).where(Team.id == team_id))
        await emit(
            self.session,
            "identity.team.deleted",
            self.principal.tenant_id,
            {"team_id": str(team_id)},
            actor=self.principal.subject,
        )

    async def add_member(self, team_id: uuid.UUID, user_id: uuid.UUID) -> schemas.Team:
        self._require_manager()
        team = await self._get(team_id)
        await self._check_users([user_id])
        await self.session.execute(
            pg_insert(TeamMember).values(team_id=team_id, user_id=user_id).on_conflict_do_nothing()
        )
        await emit(
            self.session,
            "identity.team.member_added",
            self.principal.tenant_id,
            {"team_id": str(team_id), "user_id": str(user_id)},
            actor=self.principal.subject,
        )
        return await self._view(team)

    async def remove_member(self, team_id: uuid.UUID, user_id: uuid.UUID) -> schemas.Team:
        self._require_manager()
        team = await self._get(team_id)
        removed = (
            await self.session.execute(
                delete(TeamMember)
                .where(TeamMember.team_id == team_id, TeamMember.user_id == user_id)
                .returning(TeamMember.user_id)
            )
        ).first()
        if removed is None:
            # not a member: nothing happened, and a user this tenant does not have is a 404
            if await self.session.get(User, user_id) is None:
                raise ProblemError(404, "No such user.")
            return await self._view(team)
        await emit(
            self.session,
            "identity.team.member_removed",
            self.principal.tenant_id,
            {"team_id": str(team_id), "user_id": str(user_id)},
            actor=self.principal.subject,
        )
        return await self._view(team)
