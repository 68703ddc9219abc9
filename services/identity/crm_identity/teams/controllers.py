"""Teams: ``/api/v1/teams`` and their members."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, patch, post, put

from crm_identity.problems import FORBIDDEN
from crm_identity.teams import schemas as team_schemas
from crm_identity.teams.service import TeamService
from crm_identity.web import API
from crm_lib.auth import Principal
from crm_lib.http import if_match_version
from crm_lib.pagination import Page
from crm_lib.service import ServiceRuntime


class TeamController(Controller):
    path = f"{API}/teams"
    tags = ["teams"]

    @post("/", status_code=201, summary="Create a team")
    async def create_team(
        self, data: team_schemas.TeamCreate, principal: Principal, runtime: ServiceRuntime
    ) -> team_schemas.Team:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TeamService(session, principal).create(data)

    @get("/", summary="List teams", responses={403: FORBIDDEN})
    async def list_teams(
        self, principal: Principal, runtime: ServiceRuntime
    ) -> Page[team_schemas.Team]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return Page(await TeamService(session, principal).list(), None)

    @get("/{team_id:uuid}", summary="One team", responses={403: FORBIDDEN})
    async def get_team(
        self, team_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> team_schemas.Team:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TeamService(session, principal).get(team_id)

    @patch("/{team_id:uuid}", summary="Rename a team")
    async def rename_team(
        self,
        team_id: uuid.UUID,
        data: team_schemas.TeamUpdate,
        request: Request[Any, Any, Any],
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> team_schemas.Team:
        version = if_match_version(request.headers.get("if-match"))
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TeamService(session, principal).rename(team_id, data, version)

    @delete("/{team_id:uuid}", status_code=204, summary="Delete a team")
    async def delete_team(
        self, team_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            await TeamService(session, principal).delete(team_id)

    @put("/{team_id:uuid}/members/{user_id:uuid}", status_code=200, summary="Add a member")
    async def add_member(
        self, team_id: uuid.UUID, user_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> team_schemas.Team:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TeamService(session, principal).add_member(team_id, user_id)

    @delete("/{team_id:uuid}/members/{user_id:uuid}", status_code=200, summary="Remove a member")
    async def remove_member(
        self, team_id: uuid.UUID, user_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> team_schemas.Team:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TeamService(session, principal).remove_member(team_id, user_id)
