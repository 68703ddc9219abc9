"""Keeps the members/teams read model in step with identity (visibility rules need it)."""

from __future__ import annotations

import uuid

from crm_contacts.members.repository import MemberRepository
from crm_lib.events import EventContext, Subscription

MEMBER_EVENTS = (
    "identity.user.created",
    "identity.user.roles_changed",
    "identity.user.deactivated",
    "identity.user.reactivated",
    "identity.team.created",
    "identity.team.deleted",
    "identity.team.member_added",
    "identity.team.member_removed",
)


async def apply_identity_event(ctx: EventContext) -> None:
    repo = MemberRepository(ctx.session)
    data = ctx.event.data
    match ctx.event.type:
        case "identity.user.created":
            await repo.upsert_member(
                uuid.UUID(data["user_id"]),
                roles=data["roles"],
                active=True,
                email=data.get("email"),
            )
        case "identity.user.roles_changed":
            await repo.upsert_member(uuid.UUID(data["user_id"]), roles=data["roles"])
        case "identity.user.deactivated":
            await repo.upsert_member(uuid.UUID(data["user_id"]), active=False)
        case "identity.user.reactivated":
            await repo.upsert_member(uuid.UUID(data["user_id"]), active=True)
        case "identity.team.created":
            await repo.join(uuid.UUID(data["team_id"]), [uuid.UUID(m) for m in data["member_ids"]])
        case "identity.team.member_added":
            await repo.join(uuid.UUID(data["team_id"]), [uuid.UUID(data["user_id"])])
        case "identity.team.member_removed":
            await repo.leave(uuid.UUID(data["team_id"]), uuid.UUID(data["user_id"]))
        case "identity.team.deleted":
            await repo.drop_team(uuid.UUID(data["team_id"]))


def member_subscription() -> Subscription:
    return Subscription("contacts-members", MEMBER_EVENTS, apply_identity_event)
