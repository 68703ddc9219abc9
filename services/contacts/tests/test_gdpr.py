"""GDPR export and erasure of one person, gathered from / propagated to every service."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import msgspec
from sqlalchemy import select

from crm_contacts.models import Activity, Contact, FieldChange
from crm_dev.testing import RunningPlatform, eventually
from crm_lib.events import Event
from crm_lib.privacy import PRIVACY_SERVICES, email_fingerprint
from crm_sales.models import ContactCard
from crm_support.models import Ticket
from services.contacts.tests.conftest import CrmTenant
from services.contacts.tests.test_merge import add_deal, add_ticket, card

API = "/api/v1"


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"{r.status_code} {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


async def _person(gw: httpx.AsyncClient, crm: CrmTenant, tag: str, **extra: object) -> dict:
    r = await gw.post(
        f"{API}/contacts?allow_duplicate=true",
        json={
            "first_name": "Grace",
            "last_name": f"Hopper{tag}",
            "emails": [{"address": f"grace{tag}@example.com"}],
            "phones": [{"number": "+44 20 7946 0000"}],
            "title": "Rear Admiral",
            "address": {"city": "Arlington"},
            **extra,
        },
        headers=crm.auth("owner"),
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_export_gathers_every_service(
    platform_gateway: httpx.AsyncClient,
    crm: CrmTenant,
    other_crm: CrmTenant,
    platform: RunningPlatform,
) -> None:
    gw = platform_gateway
    tag = uuid.uuid4().hex[:6]
    person = await _person(gw, crm, tag)
    r = await gw.post(
        f"{API}/activities",
        json={"kind": "call", "contact_id": person["id"], "body": "Asked about COBOL"},
        headers=crm.auth("owner"),
    )
    assert r.status_code == 201, r.text
    deal = await add_deal(platform, crm, contact_id=person["id"])
    ticket = await add_ticket(platform, crm, person["id"])
    await eventually(lambda: card(platform, crm, person["id"]))
    body = {"contact_id": person["id"]}
    url = f"{API}/gdpr/exports"

    # Role matrix: owners and admins only; other tenants do not know the contact.
    for who in ("viewer", "sales_rep", "sales_manager", "marketer"):
        _problem(await gw.post(url, json=body, headers=crm.auth(who)), 403)
    assert (await gw.post(url, json=body)).status_code == 401
    _problem(await gw.post(url, json=body, headers=other_crm.auth("owner")), 404)
    _problem(
        await gw.post(url, json={"contact_id": str(uuid.uuid4())}, headers=crm.auth("admin")), 404
    )
    r = await gw.post(url, json={"contact_id": "nope"}, headers=crm.auth("admin"))
    assert r.status_code in (400, 422), r.text

    r = await gw.post(url, json=body, headers=crm.auth("admin"))
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]
    assert r.json()["status"] in ("pending", "completed")
    _problem(await gw.get(f"{url}/{export_id}", headers=crm.auth("sales_rep")), 403)
    _problem(await gw.get(f"{url}/{export_id}", headers=other_crm.auth("owner")), 404)

    async def completed() -> dict | None:
        got = await gw.get(f"{url}/{export_id}", headers=crm.auth("owner"))
        assert got.status_code == 200, got.text
        return got.json() if got.json()["status"] == "completed" else None

    done = await eventually(completed)
    assert done["pending"] == [] and done["completed_at"]
    assert set(done["receipts"]) == set(PRIVACY_SERVICES)
    for service in PRIVACY_SERVICES:
        assert done["receipts"][service]["received_at"], service
        assert done["receipts"][service]["object"].startswith(f"{crm.tenant_id}/{export_id}/")

    r = await gw.get(f"{url}/{export_id}/download", headers=crm.auth("owner"))
    assert r.status_code == 200, r.text
    assert "attachment" in r.headers["content-disposition"]
    document = r.json()
    parts = document["services"]
    assert set(parts) == set(PRIVACY_SERVICES)
    contact_part = parts["contacts"]["contacts"][0]
    assert contact_part["id"] == person["id"]
    assert contact_part["emails"] == [{"address": f"grace{tag}@example.com"}]
    assert any(a["body"] == "Asked about COBOL" for a in parts["contacts"]["activities"])
    assert [d["id"] for d in parts["sales"]["deals"]] == [str(deal)]
    assert parts["sales"]["contact_cards"][0]["email"] == f"grace{tag}@example.com"
    assert [t["id"] for t in parts["support"]["tickets"]] == [str(ticket)]
    assert parts["marketing"]["service"] == "marketing"
    _problem(await gw.get(f"{url}/{export_id}/download", headers=other_crm.auth("owner")), 404)

    audit = await gw.get(f"{API}/audit/access", headers=crm.auth("owner"))
    actions = {(a["action"], a["details"].get("request_id")) for a in audit.json()["data"]}
    assert ("gdpr_export", export_id) in actions
    assert ("gdpr_export_download", export_id) in actions


async def test_erasure_anonymises_everywhere(
    platform_gateway: httpx.AsyncClient,
    crm: CrmTenant,
    other_crm: CrmTenant,
    platform: RunningPlatform,
) -> None:
    gw = platform_gateway
    owner = crm.auth("owner")
    tenant = uuid.UUID(crm.tenant_id)
    tag = uuid.uuid4().hex[:6]
    person = await _person(gw, crm, tag)
    duplicate = await _person(
        gw, crm, tag, emails=[{"address": f"g.hopper{tag}@example.com"}], first_name="G."
    )
    r = await gw.post(
        f"{API}/contacts/merge",
        json={"winner_id": person["id"], "loser_ids": [duplicate["id"]]},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    merge_id = r.json()["merge_id"]
    r = await gw.post(
        f"{API}/activities",
        json={"kind": "note", "contact_id": person["id"], "subject": "Bug", "body": "Moth found"},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    deal = await add_deal(platform, crm, contact_id=person["id"])
    ticket = await add_ticket(platform, crm, person["id"], description="My phone is 555-0199")
    await eventually(lambda: card(platform, crm, person["id"]))
    await eventually(lambda: card(platform, crm, duplicate["id"]))
    url = f"{API}/gdpr/erasures"
    body = {"contact_id": person["id"], "reason": "Art. 17 request"}

    for who in ("viewer", "sales_rep", "sales_manager"):
        _problem(await gw.post(url, json=body, headers=crm.auth(who)), 403)
    assert (await gw.post(url, json=body)).status_code == 401
    _problem(await gw.post(url, json=body, headers=other_crm.auth("owner")), 404)
    # A merged duplicate is erased through the record it was merged into.
    merged_away = _problem(
        await gw.post(url, json={**body, "contact_id": duplicate["id"]}, headers=owner), 409
    )
    assert merged_away["merged_into_id"] == person["id"]
    r = await gw.post(url, json={"contact_id": person["id"]}, headers=owner)
    assert r.status_code in (400, 422), r.text

    nc = await platform.runtime("contacts").nats()
    seen: list[Event] = []

    async def collect(msg: Any) -> None:
        seen.append(msgspec.json.decode(msg.data, type=Event))

    sub = await nc.subscribe(f"crm.{crm.tenant_id}.contacts.>", cb=collect)
    try:
        r = await gw.post(url, json=body, headers=crm.auth("admin"))
        assert r.status_code == 202, r.text
        erasure = r.json()
        erasure_id = erasure["id"]
        assert erasure["receipts"]["contacts"]["records"]["contacts"] == 2

        async def completed() -> dict | None:
            got = await gw.get(f"{url}/{erasure_id}", headers=owner)
            assert got.status_code == 200, got.text
            return got.json() if got.json()["status"] == "completed" else None

        done = await eventually(completed)
        erased_events = await eventually(
            lambda: [e for e in seen if e.type == "contacts.contact.erased"]
        )
    finally:
        await sub.unsubscribe()
    for service in PRIVACY_SERVICES:
        assert done["receipts"][service]["received_at"], service
    assert done["receipts"]["sales"]["records"]["contact_cards"] == 2
    assert done["receipts"]["support"]["records"]["tickets"] == 1
    # The erased event names ids and email fingerprints only, never the person.
    data = erased_events[0].data
    assert set(data) == {"contact_id", "erasure_id", "contact_ids", "email_sha256"}
    assert sorted(data["contact_ids"]) == sorted([person["id"], duplicate["id"]])
    assert email_fingerprint(f"grace{tag}@example.com") in data["email_sha256"]
    raw = msgspec.json.encode([e.data for e in seen]).decode()
    assert f"grace{tag}" not in raw and f"Hopper{tag}" not in raw

    # Contacts: gone from the API, anonymised in the tables.
    _problem(await gw.get(f"{API}/contacts/{person['id']}", headers=owner), 404)
    found = await gw.get(f"{API}/contacts", params={"q": f"hopper{tag}"}, headers=owner)
    # (Fuzzy search may still find other people named Hopper; never these two.)
    assert not {c["id"] for c in found.json()["data"]} & {person["id"], duplicate["id"]}
    async with platform.runtime("contacts").db.tenant_session(tenant) as s:
        rows = (
            await s.scalars(
                select(Contact).where(
                    Contact.id.in_([uuid.UUID(person["id"]), uuid.UUID(duplicate["id"])])
                )
            )
        ).all()
        for row in rows:
            assert row.first_name == "Erased" and row.last_name is None
            assert row.emails == [] and row.email is None and row.phones == []
            assert row.title is None and row.address == {} and row.search_text == ""
            assert row.erased_at is not None and row.deleted_at is not None
        notes = (
            await s.scalars(select(Activity).where(Activity.contact_id == uuid.UUID(person["id"])))
        ).all()
        assert notes and all(a.subject == "[erased]" and a.body is None for a in notes)
        history = (
            await s.scalars(
                select(FieldChange).where(
                    FieldChange.record_id == uuid.UUID(person["id"]), FieldChange.reason != "erase"
                )
            )
        ).all()
        assert history and all(
            h.old_value == "[erased]" and h.new_value == "[erased]" for h in history
        )
    # Sales: the read model keeps tombstones only; the deal stays.
    async with platform.runtime("sales").db.tenant_session(tenant) as s:
        cards = (
            await s.scalars(
                select(ContactCard).where(
                    ContactCard.id.in_([uuid.UUID(person["id"]), uuid.UUID(duplicate["id"])])
                )
            )
        ).all()
        assert len(cards) == 2
        for c in cards:
            assert c.first_name == "Erased" and c.last_name is None and c.email is None
            assert c.status == "erased" and c.erased_at is not None
    assert deal
    # Support: the requester's words are gone.
    async with platform.runtime("support").db.tenant_session(tenant) as s:
        row = (await s.execute(select(Ticket).where(Ticket.id == ticket))).scalar_one()
        assert row.subject == "[erased]" and row.description is None

    # Idempotent: asking again answers the same erasure.
    again = await gw.post(url, json={**body, "reason": "again"}, headers=owner)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == erasure_id and again.json()["status"] == "completed"
    _problem(await gw.get(f"{url}/{erasure_id}", headers=crm.auth("viewer")), 403)
    _problem(await gw.get(f"{url}/{erasure_id}", headers=other_crm.auth("owner")), 404)
    # The merge involving the person can no longer be undone (its snapshot is gone).
    merge = await gw.get(f"{API}/merges/{merge_id}", headers=owner)
    assert merge.json()["status"] == "erased"
    _problem(await gw.post(f"{API}/merges/{merge_id}/undo", headers=owner), 409)
    audit = await gw.get(f"{API}/audit/access", params={"action": "gdpr_erasure"}, headers=owner)
    assert any(a["details"]["request_id"] == erasure_id for a in audit.json()["data"])


async def test_concurrent_erasures_answer_one_receipt(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    person = await _person(gw, crm, uuid.uuid4().hex[:6])
    body = {"contact_id": person["id"], "reason": "Asked twice"}
    first, second = await asyncio.gather(
        gw.post(f"{API}/gdpr/erasures", json=body, headers=crm.auth("owner")),
        gw.post(f"{API}/gdpr/erasures", json=body, headers=crm.auth("admin")),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 202], (first.text, second.text)
    assert first.json()["id"] == second.json()["id"]
