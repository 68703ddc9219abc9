"""Rules for users and seats. Never commits (the request edge does)."""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.api_keys.service import revoke_keys_created_by
from crm_identity.models import User as UserRow
from crm_identity.oauth.service import revoke_clients_created_by
from crm_identity.roles import MANAGERS, ensure_may_grant, validate_roles
from crm_identity.users import schemas
from crm_identity.users.repository import UserRepository
from crm_lib.auth import Principal
from crm_lib.events import emit
from crm_lib.http import ProblemError, require_version
from crm_lib.revocation import revoke_subject_on_commit


def to_schema(user: UserRow, team_ids: list[uuid.UUID] | None = None) -> schemas.User:
    return schemas.User(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        roles=list(user.roles),
        status=user.status,
        team_ids=team_ids or [],
        last_login_at=user.last_login_at,
        created_at=user.created_at,
        updated_at=user.updated_at,
        version=user.version,
    )


def sees_seats(principal: Principal) -> bool:
    """Seat usage is shown to owners and admins, and to credentials with ``seats:read``."""
    if principal.kind == "user":
        return principal.has_role("owner", "admin")
    return principal.allows("seats:read")


class SeatPolicy:
    """Active users + pending invitations never exceed the tenant's seats."""

    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.repo = UserRepository(session)
        self.tenant_id = tenant_id

    async def summary(self) -> schemas.Seats:
        limit = await self.repo.seat_limit(self.tenant_id)
        active, pending = await self.repo.seats_used()
        used = active + pending
        return schemas.Seats(limit, active, pending, used, max(0, limit - used))

    async def claim(self, seats: int = 1) -> None:
        """Reserve seats inside the caller's transaction (serialised per tenant)."""
        limit = await self.repo.lock_seat_limit(self.tenant_id)
        active, pending = await self.repo.seats_used()
        if active + pending + seats > limit:
            raise ProblemError(
                409,
                f"All {limit} seats are in use ({active} active users, {pending} pending "
                "invitations). Buy more seats or free one up.",
                title="No seat available",
                type_="https://errors.crm.example/seats-exhausted",
            )


class UserService:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session = session
        self.principal = principal
        self.repo = UserRepository(session)

    def _require_manager(self) -> None:
        if not self.principal.has_role(*MANAGERS):
            raise ProblemError(403, "Only owners and admins manage users.")

    async def get(self, user_id: uuid.UUID) -> schemas.User:
        user = await self.repo.get(user_id)
        if user is None:
            raise ProblemError(404, "No such user.")
        return to_schema(user, (await self.repo.team_ids([user.id]))[user.id])

    async def page(
        self, limit: int, after: tuple[str, uuid.UUID] | None, status: str | None, role: str | None
    ) -> tuple[list[schemas.User], UserRow | None]:
        rows = await self.repo.page(limit + 1, after, status, role)
        more = rows[limit] if len(rows) > limit else None
        rows = rows[:limit]
        teams = await self.repo.team_ids([r.id for r in rows])
        return [to_schema(r, teams[r.id]) for r in rows], (rows[-1] if more else None)

    async def _ensure_owner_remains(
        self, user: UserRow, new_roles: list[str] | None, new_status: str | None
    ) -> None:
        if "owner" not in user.roles or user.status != "active":
            return
        loses_owner = (new_roles is not None and "owner" not in new_roles) or (
            new_status is not None and new_status != "active"
        )
        if loses_owner:
            # Serialise owner changes on the tenant's registry row.
            await self.repo.lock_seat_limit(self.principal.tenant_id)
            if await self.repo.count_active_owners() <= 1:
                raise ProblemError(
                    409, "The last owner cannot be removed or demoted.", title="Last owner"
                )

    async def update(
        self, user_id: uuid.UUID, data: schemas.UserUpdate, if_match: int | None
    ) -> schemas.User:
        user = await self.repo.get(user_id, lock=True)
        if user is None:
            raise ProblemError(404, "No such user.")
        is_self = self.principal.user_id == user_id
        if not is_self or data.roles is not msgspec.UNSET:
            self._require_manager()
        require_version(if_match, user.version, "user")
        values: dict[str, object] = {}
        if data.full_name is not msgspec.UNSET:
            values["full_name"] = data.full_name.strip()
        if data.roles is not msgspec.UNSET:
            roles = validate_roles(list(data.roles))
            if "owner" in user.roles or "owner" in roles:
                ensure_may_grant(self.principal.roles, ["owner"])
            await self._ensure_owner_remains(user, roles, None)
            values["roles"] = roles
        if not values:
            return await self.get(user_id)
        previous = list(user.roles)  # the UPDATE … RETURNING refreshes ``user`` in place
        updated = await self.repo.update(user_id, **values)
        if "roles" in values and list(updated.roles) != previous:
            # Tokens carry roles: the user's current ones stop working once this commits.
            revoke_subject_on_commit(self.session, self.principal.tenant_id, f"user:{user_id}")
            await emit(
                self.session,
                "identity.user.roles_changed",
                self.principal.tenant_id,
                {"user_id": str(user_id), "roles": list(updated.roles), "previous": previous},
                actor=self.principal.subject,
            )
        return to_schema(updated, (await self.repo.team_ids([user_id]))[user_id])

    async def set_status(self, user_id: uuid.UUID, status: str) -> schemas.User:
        self._require_manager()
        user = await self.repo.get(user_id, lock=True)
        if user is None:
            raise ProblemError(404, "No such user.")
        if "owner" in user.roles:
            ensure_may_grant(self.principal.roles, ["owner"])
        if user.status == status:
            return await self.get(user_id)
        if status == "active":
            await SeatPolicy(self.session, self.principal.tenant_id).claim()
            await self.repo.add_login(user.email, self.principal.tenant_id, user.id)
        else:
            await self._ensure_owner_remains(user, None, status)
            await self.repo.remove_login(user.email, self.principal.tenant_id)
            # A deactivated user's sessions and access tokens end now, and so do the API
            # keys and OAuth clients they created (docs/auth.md "Offboarding a user").
            await self.repo.revoke_refresh_tokens(user_id)
            revoke_subject_on_commit(self.session, self.principal.tenant_id, f"user:{user_id}")
            await revoke_keys_created_by(self.session, self.principal, user_id)
            await revoke_clients_created_by(self.session, self.principal, user_id)
        updated = await self.repo.update(user_id, status=status)
        await emit(
            self.session,
            f"identity.user.{'reactivated' if status == 'active' else 'deactivated'}",
            self.principal.tenant_id,
            {"user_id": str(user_id)},
            actor=self.principal.subject,
        )
        return to_schema(updated, (await self.repo.team_ids([user_id]))[user_id])
