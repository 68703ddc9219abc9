"""Projects other services' events about a contact or company into the timeline."""

from __future__ import annotations

import uuid
from typing import Any

from crm_contacts.activities.repository import ActivityRepository
from crm_lib.events import EventContext, Subscription

TIMELINE_EVENTS = (
    "sales.deal.created",
    "sales.deal.won",
    "sales.deal.lost",
    "marketing.campaign.sent",
    "marketing.email.opened",
    "marketing.email.clicked",
    "support.ticket.opened",
    "support.ticket.solved",
)


def _uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    return None


def _subject(data: dict[str, Any]) -> str | None:
    for key in ("name", "title", "subject"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:300]
    return None


async def project_event(ctx: EventContext) -> None:
    """One activity per event (``source_event_id`` makes redeliveries no-ops)."""
    event = ctx.event
    data = event.data if isinstance(event.data, dict) else {}
    contact_id, company_id = _uuid(data.get("contact_id")), _uuid(data.get("company_id"))
    if contact_id is None and company_id is None:
        return
    source, kind = event.type.split(".", 1)
    await ActivityRepository(ctx.session).project(
        {
            "id": uuid.uuid4(),
            "source": source[:20],
            "kind": kind[:60],
            "contact_id": contact_id,
            "company_id": company_id,
            "subject": _subject(data),
            "details": data,
            "occurred_at": event.occurred_at,
            "source_event_id": event.id,
            "created_by": event.actor[:200] if event.actor else None,
        }
    )


def timeline_subscription() -> Subscription:
    return Subscription("contacts-timeline", TIMELINE_EVENTS, project_event)
