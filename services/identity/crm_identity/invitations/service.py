"""Invitations: seat-checked, emailed with a one-time link, accepted into a user."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.emails import normalize_email
from crm_identity.invitations import schemas
from crm_identity.mail.service import request_email
from crm_identity.models import Invitation, Team, TeamMember
from crm_identity.roles import MANAGERS, ensure_may_grant, validate_roles
from crm_identity.security import new_tenant_token, sha256_hex
from crm_identity.settings import IdentitySettings
from crm_identity.users.repository import UserRepository
from crm_identity.users.service import SeatPolicy
from crm_lib.auth import Principal
from crm_lib.events import emit
from crm_lib.http import ProblemError


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
            found = set(
                (await self.session.execute(select(Team.id).where(Team.id.in_(team_ids)))).scalars()
            )
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
        pending = (
            await self.session.execute(
                select(Invitation.id).where(
                    Invitation.email == email,
                    Invitation.status == "pending",
                    Invitation.expires_at > func.now(),
                )
            )
        ).first()
        if pending is not None:
            raise ProblemError(409, f"{email} already has a pending invitation; resend it instead.")
        token = new_tenant_token(self.principal.tenant_id)
        row = (
            await self.session.execute(
                insert(Invitation)
                .values(
                    id=uuid.uuid4(),
                    email=email,
                    roles=roles,
                    team_ids=team_ids,
                    token_hash=sha256_hex(token),
                    status="pending",
                    invited_by=self.principal.user_id,
                    expires_at=datetime.now(UTC)
                    + timedelta(hours=self.settings.invitation_ttl_hours),
                )
                .returning(Invitation)
            )
        ).scalar_one()
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
        stmt = select(Invitation).order_by(Invitation.created_at.desc()).limit(500)
        if status == "expired":
            stmt = stmt.where(Invitation.status == "pending", Invitation.expires_at <= func.now())
        elif status == "pending":
            stmt = stmt.where(Invitation.status == "pending", Invitation.expires_at > func.now())
        elif status is not None:
            stmt = stmt.where(Invitation.status == status)
        return [to_schema(r) for r in (await self.session.execute(stmt)).scalars()]

    async def _get_open(self, invitation_id: uuid.UUID) -> Invitation:
        row = (
            await self.session.execute(
                select(Invitation).where(Invitation.id == invitation_id).with_for_update()
            )
        ).scalar_one_or_none()
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
        row = (
            await self.session.execute(
                update(Invitation)
                .where(Invitation.id == invitation_id)
                .values(
                    token_hash=sha256_hex(token),
                    sent_count=Invitation.sent_count + 1,
                    expires_at=datetime.now(UTC)
                    + timedelta(hours=self.settings.invitation_ttl_hours),
                    updated_at=func.now(),
                )
                .returning(Invitation)
            )
        ).scalar_one()
        await self._send(row, token)
        return to_schema(row)

    async def revoke(self, invitation_id: uuid.UUID) -> None:
        await self._get_open(invitation_id)
        await self.session.execute(
            update(Invitation)
            .where(Invitation.id == invitation_id)
            .values(status="revoked", updated_at=func.now())
        )
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
    for team_id in team_ids:
        await session.execute(insert(TeamMember).values(team_id=team_id, user_id=user_id))
        await emit(
            session,
            "identity.team.member_added",
            tenant_id,
            {"team_id": str(team_id), "user_id": str(user_id)},
            actor=f"user:{user_id}",
        )
