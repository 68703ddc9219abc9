"""Keeps sales in step with contacts: the contact cards read model and merge re-points.

Subscription ``sales-contact-refs`` (contacts' events, always in the event's tenant):
* ``contacts.contact.created|updated|deleted`` maintain ``contact_cards`` (name,
  primary email, company);
* ``contacts.contact.imported|import_reverted`` (big imports: up to 500 records per
  event) do the same in bulk, one statement per kind of change;
* ``contacts.contact.merged``: losers' cards become ``merged``, deals naming a loser
  now name the winner (each move remembered in ``merge_repoints``);
* ``contacts.contact.merge_undone``: the remembered moves go back (deals changed
  since keep their new contact), the losers' cards are active again;
* ``contacts.company.merged|merge_undone``: the same for ``deals.company_id`` and the
  cards' company.

Erasure is the GDPR eraser's job (``crm_sales.contact_refs.privacy``): it leaves a
tombstone card that no later event can fill again.
"""

from __future__ import annotations

import uuid
from typing import Any

from crm_lib.events import EventContext, Subscription
from crm_sales.contact_refs.repository import ContactRefRepository

CONTACT_EVENTS = (
    "contacts.contact.created",
    "contacts.contact.updated",
    "contacts.contact.deleted",
    "contacts.contact.imported",
    "contacts.contact.import_reverted",
    "contacts.contact.merged",
    "contacts.contact.merge_undone",
    "contacts.company.merged",
    "contacts.company.merge_undone",
)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def card_values(changes: dict[str, Any]) -> dict[str, Any]:
    """Card columns from an event's ``fields``/``changes`` (``{field: {from, to}}``)."""
    values: dict[str, Any] = {}
    for field in ("first_name", "last_name"):
        if field in changes:
            values[field] = changes[field].get("to")
    if "emails" in changes:
        emails = changes["emails"].get("to") or []
        values["email"] = emails[0].get("address") if emails else None
    if "company_id" in changes:
        values["company_id"] = _uuid(changes["company_id"].get("to"))
    return values


def batch_card(record: dict[str, Any]) -> dict[str, Any]:
    """Card columns from a batched import record's ``fields`` (new values, flat)."""
    fields = record.get("fields") or {}
    values: dict[str, Any] = {}
    for field in ("first_name", "last_name"):
        if field in fields:
            values[field] = fields[field]
    if "emails" in fields:
        emails = fields["emails"] or []
        values["email"] = emails[0].get("address") if emails else None
    if "company_id" in fields:
        values["company_id"] = _uuid(fields["company_id"])
    return values


async def apply_import_batch(repo: ContactRefRepository, records: list[dict[str, Any]]) -> None:
    """A batched import event: created cards in one upsert, updated ones grouped by the
    columns they change, deleted ones (a revert) in one update."""
    created: dict[uuid.UUID, dict[str, Any]] = {}
    changed: dict[tuple[str, ...], dict[uuid.UUID, dict[str, Any]]] = {}
    deleted: list[uuid.UUID] = []
    for record in records:
        card_id = _uuid(record.get("contact_id"))
        if card_id is None:
            continue
        action = record.get("action")
        if action == "created":
            values = {"first_name": None, "last_name": None, "email": None, "company_id": None}
            created[card_id] = {"id": card_id, **values, **batch_card(record), "status": "active"}
        elif action == "updated":
            values = batch_card(record)
            if values:
                changed.setdefault(tuple(sorted(values)), {})[card_id] = {"id": card_id, **values}
        elif action == "deleted":
            deleted.append(card_id)
    await repo.upsert_cards(list(created.values()))
    for _columns, rows in sorted(changed.items()):
        await repo.upsert_cards(list(rows.values()))
    if deleted:
        await repo.set_status(deleted, "deleted")


async def apply_contact_event(ctx: EventContext) -> None:
    repo = ContactRefRepository(ctx.session)
    data = ctx.event.data
    entity, action = ctx.event.type.split(".")[1:]
    if action in ("imported", "import_reverted"):
        await apply_import_batch(repo, list(data.get("records") or []))
        return
    if entity == "company":
        merge_id, winner = uuid.UUID(data["merge_id"]), uuid.UUID(data["winner_id"])
        losers = [uuid.UUID(i) for i in data["loser_ids"]]
        for target in ("deals.company_id", "contact_cards.company_id"):
            if action == "merged":
                await repo.repoint(merge_id, target, losers, winner)
            else:
                await repo.restore(merge_id, target, winner)
        return
    contact_id = uuid.UUID(data["contact_id"])
    match action:
        case "created":
            await repo.upsert_card(
                contact_id, {**card_values(data.get("fields") or {}), "status": "active"}
            )
        case "updated":
            values = card_values(data.get("changes") or {})
            if values:
                await repo.upsert_card(contact_id, values)
        case "deleted":
            await repo.set_status([contact_id], "deleted")
        case "merged":
            merge_id = uuid.UUID(data["merge_id"])
            losers = [uuid.UUID(i) for i in data["loser_ids"]]
            await repo.set_status(losers, "merged", contact_id)
            await repo.repoint(merge_id, "deals.contact_id", losers, contact_id)
            values = card_values(data.get("changes") or {})
            if values:
                await repo.upsert_card(contact_id, values)
        case "merge_undone":
            merge_id = uuid.UUID(data["merge_id"])
            await repo.restore(merge_id, "deals.contact_id", contact_id)
            await repo.set_status([uuid.UUID(i) for i in data["loser_ids"]], "active")
            values = card_values(data.get("changes") or {})
            if values:
                await repo.upsert_card(contact_id, values)


def contact_refs_subscription() -> Subscription:
    return Subscription("contact-refs", CONTACT_EVENTS, apply_contact_event)
