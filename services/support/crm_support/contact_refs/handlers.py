"""Support's consumers of contacts events: merge re-points and GDPR answers.

* ``support-contact-refs``: ``contacts.contact.merged`` points tickets requested by a
  loser at the winner (remembered in ``merge_repoints``);
  ``contacts.contact.merge_undone`` moves them back (tickets changed since keep
  their new requester).
* ``support-gdpr`` (``crm_lib.privacy``): export = the person's tickets; erasure =
  their tickets' subject and description redacted.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_lib.events import EventContext, Subscription
from crm_lib.privacy import Person, privacy_subscription
from crm_support.contact_refs.repository import TicketRefRepository


async def apply_merge(ctx: EventContext) -> None:
    data = ctx.event.data
    repo = TicketRefRepository(ctx.session)
    merge_id, winner = uuid.UUID(data["merge_id"]), uuid.UUID(data["winner_id"])
    if ctx.event.type == "contacts.contact.merged":
        await repo.repoint(merge_id, [uuid.UUID(i) for i in data["loser_ids"]], winner)
    else:
        await repo.restore(merge_id, winner)


async def collect(session: AsyncSession, person: Person) -> dict[str, Any]:
    return {"tickets": await TicketRefRepository(session).tickets_of(list(person.contact_ids))}


async def erase(session: AsyncSession, person: Person) -> dict[str, int]:
    return {"tickets": await TicketRefRepository(session).redact_tickets(list(person.contact_ids))}


def support_subscriptions() -> list[Subscription]:
    return [
        Subscription(
            "contact-refs",
            ("contacts.contact.merged", "contacts.contact.merge_undone"),
            apply_merge,
        ),
        privacy_subscription("support", collector=collect, eraser=erase),
    ]
