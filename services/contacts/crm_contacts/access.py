"""Who may see and change which records (the one visibility rule of this service).

Owners, admins and sales managers see and change everything; marketers and support
agents see everything and change records; viewers only read. A ``sales_rep`` sees
and changes the records they own, plus those owned by teammates in teams with a
team rule (``read`` or ``edit``). API keys and OAuth clients act tenant-wide within
their scopes. The same ``Access`` filters lists, search, exports, the timeline and
the events consumers see.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.members.repository import MemberRepository
from crm_lib.auth import FORBIDDEN_TYPE, Principal
from crm_lib.http import ProblemError

READ_ALL = frozenset({"owner", "admin", "sales_manager", "marketer", "support_agent", "viewer"})
WRITE_ALL = frozenset({"owner", "admin", "sales_manager", "marketer", "support_agent"})
DELETE_ALL = frozenset({"owner", "admin", "sales_manager"})
REASSIGN = frozenset({"owner", "admin", "sales_manager"})
ADMINS = frozenset({"owner", "admin"})
TAG_MANAGERS = frozenset({"owner", "admin", "sales_manager", "marketer"})
SCOPED = "sales_rep"


def forbidden(detail: str) -> ProblemError:
    return ProblemError(403, detail, type_=FORBIDDEN_TYPE)


@dataclass(frozen=True)
class Access:
    principal: Principal
    #: None = every record; otherwise the owners whose records are visible.
    readable_owners: frozenset[uuid.UUID] | None
    writable_owners: frozenset[uuid.UUID] | None
    can_write: bool
    can_delete_all: bool

    @property
    def actor(self) -> str:
        return self.principal.subject

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.principal.user_id

    def is_user(self) -> bool:
        return self.principal.kind == "user"

    def has(self, roles: frozenset[str], scope: str) -> bool:
        if self.is_user():
            return bool(self.principal.roles & roles)
        return self.principal.allows(scope)

    def may_read(self, owner_id: uuid.UUID | None) -> bool:
        return self.readable_owners is None or owner_id in self.readable_owners

    def may_write(self, owner_id: uuid.UUID | None) -> bool:
        return self.can_write and (self.writable_owners is None or owner_id in self.writable_owners)

    def may_delete(self, owner_id: uuid.UUID | None) -> bool:
        return self.can_delete_all or (
            self.can_write
            and self.writable_owners is not None
            and owner_id is not None
            and owner_id == self.user_id
        )

    def require_write(self) -> None:
        if not self.can_write:
            raise forbidden("Your role cannot change customer records.")

    def require(self, roles: frozenset[str], scope: str, what: str) -> None:
        if not self.has(roles, scope):
            raise forbidden(f"Only {', '.join(sorted(roles))} can {what}.")

    def may_reassign(self) -> bool:
        return self.has(REASSIGN, "contacts:write")

    def may_read_sensitive(self, readable_by: list[str]) -> bool:
        if self.is_user():
            return bool(self.principal.roles & (ADMINS | frozenset(readable_by)))
        return self.principal.allows("contacts:admin")


async def access_for(session: AsyncSession, principal: Principal) -> Access:
    """The caller's access; for reps, widened by the team rules of their teams."""
    if principal.kind != "user":
        if not principal.allows("contacts:read"):
            raise forbidden("The access token lacks the scope contacts:read.")
        may_write = principal.allows("contacts:write")
        return Access(principal, None, None, may_write, may_write)
    roles = principal.roles
    if roles & WRITE_ALL:
        return Access(principal, None, None, True, bool(roles & DELETE_ALL))
    if SCOPED in roles and principal.user_id is not None:
        readable, writable = await _team_reach(session, principal.user_id)
        # A rep who is also a viewer reads everything but still changes only their own.
        return Access(principal, None if roles & READ_ALL else readable, writable, True, False)
    if roles & READ_ALL:
        return Access(principal, None, None, False, False)
    raise forbidden("Your role has no access to customer records.")


async def _team_reach(
    session: AsyncSession, user_id: uuid.UUID
) -> tuple[frozenset[uuid.UUID], frozenset[uuid.UUID]]:
    rows = await MemberRepository(session).teammates(user_id)
    readable = {user_id, *(member for member, _access in rows)}
    writable = {user_id, *(member for member, access in rows if access == "edit")}
    return frozenset(readable), frozenset(writable)
