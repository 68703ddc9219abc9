"""Teams and their members (the basis of team visibility rules in other services).

Rules only: queries are in ``repository.py``; never commits."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.models import Team
from crm_identity.roles import MANAGERS
from crm_identity.teams import schemas
from crm_identity.teams.repository import TeamRepository
from crm_lib.auth import Principal
from crm_lib.events import emit
from crm_lib.http import ProblemError, require_version


class TeamService:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session = session
        self.principal = principal
        self.repo = TeamRepository(session)

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
        members = await self.repo.member_ids(team.id)
        return schemas.Team(
            team.id, team.name, members, team.created_at, team.updated_at, team.version
        )

    async def _get(self, team_id: uuid.UUID) -> Team:
        team = await self.repo.get(team_id)
        if team is None:
            raise ProblemError(404, "No such team.")
        return team

    async def _name_free(self, name: str, exclude: uuid.UUID | None = None) -> None:
        if await self.repo.name_taken(name, exclude):
            raise ProblemError(409, f"A team named '{name}' already exists.")

    async def _check_users(self, user_ids: list[uuid.UUID]) -> None:
        if not user_ids:
            return
        found = await self.repo.existing_user_ids(user_ids)
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
        team = await self.repo.insert(name)
        for user_id in members:
            await self.repo.insert_member(team.id, user_id)
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
        teams = await self.repo.list()
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
        team = await self.repo.rename(team_id, data.name.strip())
        return await self._view(team)

    async def delete(self, team_id: uuid.UUID) -> None:
        self._require_manager()
        await self._get(team_id)
        await self.repo.delete(team_id)
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
        await self.repo.add_member(team_id, user_id)
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
        if not await self.repo.remove_member(team_id, user_id):
            # not a member: nothing happened, and a user this tenant does not have is a 404
            if not await self.repo.user_exists(user_id):
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
