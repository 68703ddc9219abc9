"""Invitations: seat-checked, emailed with a one-time link, accepted into a user.

Rules only: queries are in ``repository.py``; never commits (the request edge does)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.emails import normalize_email
from crm_identity.invitations import schemas
from crm_identity.invitations.repository import InvitationRepository
from crm_identity.mail.service import request_email
from crm_identity.models import Invitation
from crm_identity.roles import MANAGERS, ensure_may_grant, validate_roles
from crm_identity.security import (
    PasswordHashing,
    new_tenant_token,
    password_problems,
    sha256_hex,
    tenant_of_token,
)
from crm_identity.sessions import schemas as session_schemas
from crm_identity.sessions.service import SessionService
from crm_identity.settings import IdentitySettings
from crm_identity.teams.repository import TeamRepository
from crm_identity.tenants.repository import TenantRepository
from crm_identity.users.repository import UserRepository
from crm_identity.users.service import SeatPolicy
from crm_lib.auth import Principal
from crm_lib.events import emit
from crm_lib.http import ProblemError
from crm_lib.tenancy import Database


def to_schema(row: Invitation) -> schemas.Invitation:
    status = row.status
    if status == "pending" and row.expires_at <= datetime.now(UTC):
        status = "expired"
    return schemas.Invitation(
        id=row.id,
        email=row.email,
        roles=list(row.roles),
        status=status,
        expires_at=row.expires_at,
        sent_count=row.sent_count,
        created_at=row.created_at,
        accepted_at=row.accepted_at,
    )


class InvitationService:
    def __init__(
        self, session: AsyncSession, principal: Principal, settings: IdentitySettings
    ) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings
        self.repo = InvitationRepository(session)
        if not principal.has_role(*MANAGERS):
            raise ProblemError(403, "Only owners and admins manage invitations.")

    async def _send(self, row: Invitation, token: str) -> None:
        link = f"{self.settings.app_base_url}/accept-invitation?token={token}"
        await request_email(
            self.session,
            self.principal.tenant_id,
            to=row.email,
            kind="invitation",
            subject="You have been invited to the CRM",
            body=(
                f"You have been invited to join your team's CRM as {', '.join(row.roles)}.\n\n"
                f"Accept the invitation: {link}\n\n"
                f"The link works once and expires at {row.expires_at.isoformat()}.\n"
            ),
            actor=self.principal.subject,
        )

    async def create(self, data: schemas.InvitationCreate) -> tuple[schemas.Invitation, str]:
        email = normalize_email(data.email)
        roles = validate_roles(list(data.roles))
        ensure_may_grant(self.principal.roles, roles)
        users = UserRepository(self.session)
        team_ids = sorted(set(data.team_ids))
        if team_ids:
            found = await TeamRepository(self.session).existing_ids(team_ids)
            if missing := [str(t) for t in team_ids if t not in found]:
                raise ProblemError(
                    422,
                    "Unknown team(s).",
                    title="Validation failed",
                    errors=[{"field": "team_ids", "message": ", ".join(missing)}],
                )
        await SeatPolicy(self.session, self.principal.tenant_id).claim()
        existing = await users.by_email(email)
        if existing is not None:
            raise ProblemError(409, f"{email} is already a user of this tenant.")
        if await self.repo.has_pending(email):
            raise ProblemError(409, f"{email} already has a pending invitation; resend it instead.")
        token = new_tenant_token(self.principal.tenant_id)
        row = await self.repo.insert(
            id=uuid.uuid4(),
            email=email,
            roles=roles,
            team_ids=team_ids,
            token_hash=sha256_hex(token),
            status="pending",
            invited_by=self.principal.user_id,
            expires_at=datetime.now(UTC) + timedelta(hours=self.settings.invitation_ttl_hours),
        )
        await emit(
            self.session,
            "identity.invitation.created",
            self.principal.tenant_id,
            {
                "invitation_id": str(row.id),
                "email": email,
                "roles": roles,
                "team_ids": [str(t) for t in team_ids],
            },
            actor=self.principal.subject,
        )
        await self._send(row, token)
        return to_schema(row), token

    async def list(self, status: str | None) -> list[schemas.Invitation]:
        return [to_schema(r) for r in await self.repo.list(status)]

    async def _get_open(self, invitation_id: uuid.UUID) -> Invitation:
        row = await self.repo.get_locked(invitation_id)
        if row is None:
            raise ProblemError(404, "No such invitation.")
        if row.status != "pending":
            raise ProblemError(409, f"The invitation is {row.status}.")
        return row

    async def resend(self, invitation_id: uuid.UUID) -> schemas.Invitation:
        row = await self._get_open(invitation_id)
        if row.expires_at <= datetime.now(UTC):
            # An expired invitation no longer holds a seat: take one again.
            await SeatPolicy(self.session, self.principal.tenant_id).claim()
        token = new_tenant_token(self.principal.tenant_id)
        row = await self.repo.renew(
            invitation_id,
            sha256_hex(token),
            datetime.now(UTC) + timedelta(hours=self.settings.invitation_ttl_hours),
        )
        await self._send(row, token)
        return to_schema(row)

    async def revoke(self, invitation_id: uuid.UUID) -> None:
        await self._get_open(invitation_id)
        await self.repo.set_revoked(invitation_id)
        await emit(
            self.session,
            "identity.invitation.revoked",
            self.principal.tenant_id,
            {"invitation_id": str(invitation_id)},
            actor=self.principal.subject,
        )


async def join_teams(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID, team_ids: list[uuid.UUID]
) -> None:
    """Add an accepted invitee to the invitation's teams (other services learn it by event)."""
    teams = TeamRepository(session)
    for team_id in team_ids:
        await teams.insert_member(team_id, user_id)
        await emit(
            session,
            "identity.team.member_added",
            tenant_id,
            {"team_id": str(team_id), "user_id": str(user_id)},
            actor=f"user:{user_id}",
        )


class InvitationAcceptance:
    """An invitee (anonymous, holding the emailed link) becomes a user and is signed in.

    Opens its own sessions (the tenant is only known from the token); never commits itself:
    each session commits when its block ends cleanly.
    """

    def __init__(
        self,
        db: Database,
        settings: IdentitySettings,
        hashing: PasswordHashing,
        sessions: SessionService,
    ) -> None:
        self.db = db
        self.settings = settings
        self.hashing = hashing
        self.sessions = sessions

    async def accept(self, data: schemas.InvitationAccept) -> session_schemas.TokenPair:
        gone = ProblemError(404, "This invitation link is not valid.")
        tenant_id = tenant_of_token(data.token)
        if tenant_id is None:
            raise gone
        async with self.db.platform_session() as session:
            tenant = await TenantRepository(session).get(tenant_id)
        if tenant is None or tenant.status in ("deleting", "deleted", "pending_deletion"):
            raise gone
        async with self.db.tenant_session(tenant_id) as session:
            invitation = await InvitationRepository(session).by_token_hash_locked(
                sha256_hex(data.token)
            )
            if invitation is None or invitation.status != "pending":
                raise gone
            if invitation.expires_at <= datetime.now(UTC):
                raise ProblemError(
                    410, "This invitation has expired; ask for a new one.", title="Gone"
                )
            problems = password_problems(
                data.password, email=invitation.email, min_length=self.settings.password_min_length
            )
            if problems:
                raise ProblemError(
                    422,
                    "The password is too weak.",
                    title="Validation failed",
                    errors=[{"field": "password", "message": "; ".join(problems)}],
                )
            users = UserRepository(session)
            if await users.by_email(invitation.email) is not None:
                raise ProblemError(409, "A user with this email already exists.")
            password_hash = await self.hashing.hash(data.password)
            user = await users.insert(
                id=uuid.uuid4(),
                email=invitation.email,
                full_name=data.full_name.strip(),
                password_hash=password_hash,
                roles=list(invitation.roles),
                status="active",
            )
            await join_teams(session, tenant_id, user.id, list(invitation.team_ids))
            await users.add_login(invitation.email, tenant_id, user.id)
            await InvitationRepository(session).set_accepted(invitation.id)
            await emit(
                session,
                "identity.user.created",
                tenant_id,
                {
                    "user_id": str(user.id),
                    "email": invitation.email,
                    "roles": list(user.roles),
                    "source": "invitation",
                    "invitation_id": str(invitation.id),
                },
                actor=f"user:{user.id}",
            )
            return await self.sessions.issue(session, tenant, user)
