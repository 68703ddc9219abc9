"""Team rules (``/api/v1/visibility-rules``): owners/admins widen what reps see."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, put

from crm_contacts.access import ADMINS, access_for
from crm_contacts.members import schemas
from crm_contacts.members.repository import MemberRepository
from crm_contacts.problems import INVALID
from crm_lib.auth import Principal
from crm_lib.events import emit
from crm_lib.http import ProblemError
from crm_lib.service import ServiceRuntime

PATH = "/api/v1/visibility-rules"


class TeamRuleController(Controller):
    path = PATH
    tags = ["visibility"]

    @get("/", summary="Team rules: which teams share records among their members")
    async def list_rules(
        self, principal: Principal, runtime: ServiceRuntime
    ) -> list[schemas.TeamRule]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            access = await access_for(session, principal)
            access.require(ADMINS, "contacts:admin", "see team rules")
            repo = MemberRepository(session)
            return [
                schemas.TeamRule(
                    r.team_id, r.access, await repo.team_members(r.team_id), r.created_at
                )
                for r in await repo.rules()
            ]

    @put(
        "/{team_id:uuid}",
        summary="Set a team rule (read or edit; 422 unless the team is one of the tenant's)",
        responses={422: INVALID},
    )
    async def set_rule(
        self,
        team_id: uuid.UUID,
        data: schemas.TeamRuleSet,
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> schemas.TeamRule:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            access = await access_for(session, principal)
            access.require(ADMINS, "contacts:admin", "change team rules")
            repo = MemberRepository(session)
            if not await repo.team_exists(team_id):
                # No dangling rules: the team must be one of this tenant's (as identity's
                # team events told this service; a team created a moment ago may take
                # a second to arrive).
                raise ProblemError(
                    422,
                    "team_id names no team of this tenant.",
                    title="Validation failed",
                    errors=[{"field": "team_id", "message": "no such team in this tenant"}],
                )
            rule = await repo.set_rule(team_id, data.access)
            await emit(
                session,
                "contacts.visibility_rule.set",
                principal.tenant_id,
                {"team_id": str(team_id), "access": data.access},
                actor=principal.subject,
            )
            return schemas.TeamRule(
                rule.team_id, rule.access, await repo.team_members(team_id), rule.created_at
            )

    @delete("/{team_id:uuid}", status_code=204, summary="Remove a team rule")
    async def delete_rule(
        self, team_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            access = await access_for(session, principal)
            access.require(ADMINS, "contacts:admin", "change team rules")
            if not await MemberRepository(session).delete_rule(team_id):
                raise ProblemError(404, "This team has no rule.")
            await emit(
                session,
                "contacts.visibility_rule.removed",
                principal.tenant_id,
                {"team_id": str(team_id)},
                actor=principal.subject,
            )
