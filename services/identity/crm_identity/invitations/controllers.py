"""Invitations: ``/api/v1/invitations`` (owners and admins) and accepting one (the invitee)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.params import Parameter

from crm_identity.components import identity_of
from crm_identity.invitations import schemas as inv_schemas
from crm_identity.invitations.service import InvitationAcceptance, InvitationService
from crm_identity.sessions import schemas as session_schemas
from crm_identity.web import API, NO_STORE, user_only
from crm_lib.auth import Principal
from crm_lib.pagination import Page
from crm_lib.service import ServiceRuntime


class InvitationController(Controller):
    path = f"{API}/invitations"
    tags = ["invitations"]

    @post("/", status_code=201, summary="Invite a colleague (takes a seat; emails a one-time link)")
    async def invite(
        self, data: inv_schemas.InvitationCreate, principal: Principal, runtime: ServiceRuntime
    ) -> inv_schemas.Invitation:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            invitation, _token = await InvitationService(
                session, principal, identity_of(runtime).settings
            ).create(data)
        return invitation

    @get("/", summary="List invitations")
    async def list_invitations(
        self,
        principal: Principal,
        runtime: ServiceRuntime,
        status: Annotated[
            str | None, Parameter(pattern=r"^(pending|accepted|revoked|expired)$")
        ] = None,
    ) -> Page[inv_schemas.Invitation]:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            rows = await InvitationService(session, principal, identity_of(runtime).settings).list(
                status
            )
        return Page(rows, None)

    @post("/{invitation_id:uuid}/resend", status_code=200, summary="Send the invitation again")
    async def resend(
        self, invitation_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> inv_schemas.Invitation:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await InvitationService(
                session, principal, identity_of(runtime).settings
            ).resend(invitation_id)

    @delete("/{invitation_id:uuid}", status_code=204, summary="Revoke an invitation")
    async def revoke_invitation(
        self, invitation_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            await InvitationService(session, principal, identity_of(runtime).settings).revoke(
                invitation_id
            )

    @post(
        "/accept",
        status_code=201,
        summary="Accept an invitation: set name and password",
        cache_control=NO_STORE,
    )
    async def accept(
        self, data: inv_schemas.InvitationAccept, runtime: ServiceRuntime
    ) -> session_schemas.TokenPair:
        ident = identity_of(runtime)
        return await InvitationAcceptance(
            runtime.db, ident.settings, ident.hashing, ident.sessions
        ).accept(data)
