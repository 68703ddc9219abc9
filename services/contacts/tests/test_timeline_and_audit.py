"""Activities, timelines (logged and projected from other services) and the audit API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec

from crm_contacts.activities.handlers import project_event
from crm_dev.testing import RunningPlatform, eventually
from crm_lib.events import EventContext, connect_nats, emit, new_event, subject_for
from services.contacts.tests.conftest import CrmTenant

API = "/api/v1"


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


async def _contact(gw: httpx.AsyncClient, crm: CrmTenant, who: str, **body: object) -> dict:
    payload = {"first_name": "Time", "last_name": uuid.uuid4().hex[:6], **body}
    r = await gw.post(f"{API}/contacts?allow_duplicate=true", json=payload, headers=crm.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


async def _log(gw: httpx.AsyncClient, crm: CrmTenant, who: str, **body: object) -> dict:
    r = await gw.post(f"{API}/activities", json={"kind": "note", **body}, headers=crm.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


async def _timeline(
    gw: httpx.AsyncClient, crm: CrmTenant, who: str, entity: str, record_id: str, **params: str
) -> httpx.Response:
    return await gw.get(
        f"{API}/timeline/{entity}/{record_id}", params=params, headers=crm.auth(who)
    )


async def test_log_activities_roles_and_visibility(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    mine = await _contact(gw, crm, "sales_rep")
    theirs = await _contact(gw, crm, "sales_rep2")
    company = (
        await gw.post(
            f"{API}/companies",
            json={"name": f"Tl {uuid.uuid4().hex[:6]}"},
            headers=crm.auth("owner"),
        )
    ).json()

    by_owner = await _log(
        gw,
        crm,
        "owner",
        kind="call",
        contact_id=theirs["id"],
        subject="Discovery call",
        details={"duration_minutes": 30, "direction": "outbound", "outcome": "connected"},
        occurred_at="2025-03-01T10:00:00Z",
    )
    assert by_owner["source"] == "contacts" and by_owner["kind"] == "call"
    assert by_owner["details"]["duration_minutes"] == 30
    assert by_owner["occurred_at"].startswith("2025-03-01T10:00:00")
    by_rep = await _log(gw, crm, "sales_rep", contact_id=mine["id"], body="Met at the fair")
    assert by_rep["created_by"]
    on_company = await _log(gw, crm, "owner", kind="meeting", company_id=company["id"])
    got = await gw.get(f"{API}/activities/{on_company['id']}", headers=crm.auth("viewer"))
    assert got.status_code == 200 and got.json()["company_id"] == company["id"]

    # A rep cannot log on, read or see the timeline of a contact they cannot see.
    rep = crm.auth("sales_rep")
    _problem(
        await gw.post(
            f"{API}/activities", json={"kind": "note", "contact_id": theirs["id"]}, headers=rep
        ),
        404,
    )
    _problem(await gw.get(f"{API}/activities/{by_owner['id']}", headers=rep), 404)
    _problem(await _timeline(gw, crm, "sales_rep", "contacts", theirs["id"]), 404)
    assert (await _timeline(gw, crm, "sales_rep", "contacts", mine["id"])).status_code == 200
    # Viewers read but never log; nothing attached or an unknown kind is invalid.
    _problem(
        await gw.post(
            f"{API}/activities",
            json={"kind": "note", "contact_id": mine["id"]},
            headers=crm.auth("viewer"),
        ),
        403,
    )
    assert (await _timeline(gw, crm, "viewer", "contacts", mine["id"])).status_code == 200
    _problem(await gw.post(f"{API}/activities", json={"kind": "note"}, headers=rep), 422)
    r = await gw.post(
        f"{API}/activities", json={"kind": "fax", "contact_id": mine["id"]}, headers=rep
    )
    assert r.status_code in (400, 422), r.text
    _problem(await gw.get(f"{API}/activities/{uuid.uuid4()}", headers=crm.auth("owner")), 404)


async def test_edit_with_if_match_and_delete(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    contact = await _contact(gw, crm, "sales_rep")
    act = await _log(gw, crm, "sales_rep", contact_id=contact["id"], subject="First")
    rep = crm.auth("sales_rep")
    url = f"{API}/activities/{act['id']}"
    r = await gw.patch(url, json={"subject": "Second"}, headers={**rep, "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "Second" and r.json()["version"] == 2
    assert r.headers["ETag"] == '"2"'
    stale = await gw.patch(url, json={"subject": "Third"}, headers={**rep, "If-Match": '"1"'})
    _problem(stale, 412)
    # Another rep sees nothing of it.
    _problem(await gw.patch(url, json={"subject": "x"}, headers=crm.auth("sales_rep2")), 404)
    _problem(await gw.delete(url, headers={**rep, "If-Match": '"1"'}), 412)
    assert (await gw.delete(url, headers={**rep, "If-Match": '"2"'})).status_code == 204
    _problem(await gw.get(url, headers=rep), 404)


async def test_timeline_order_and_pagination(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    contact = await _contact(gw, crm, "owner")
    times = [f"2025-01-{day:02d}T09:00:00Z" for day in (5, 1, 9, 3, 7)]
    for i, at in enumerate(times):
        await _log(gw, crm, "owner", contact_id=contact["id"], subject=f"n{i}", occurred_at=at)
    # Two at the same instant: ties break by id (desc), still with no gaps or repeats.
    await _log(gw, crm, "owner", contact_id=contact["id"], subject="tie", occurred_at=times[0])
    seen: list[dict] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await _timeline(gw, crm, "owner", "contacts", contact["id"], **params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["data"]) <= 2
        seen += body["data"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 6
    assert len({a["id"] for a in seen}) == 6
    keys = [(a["occurred_at"], a["id"]) for a in seen]
    assert keys == sorted(keys, reverse=True)
    assert seen[0]["subject"] == "n2"  # Jan 9 first
    whole = (await _timeline(gw, crm, "owner", "contacts", contact["id"])).json()
    assert [a["id"] for a in whole["data"]] == [a["id"] for a in seen]
    assert whole["next_cursor"] is None
    _problem(await _timeline(gw, crm, "owner", "contacts", contact["id"], cursor="garbage!"), 400)
    _problem(await _timeline(gw, crm, "owner", "contacts", contact["id"], limit="0"), 422)
    _problem(await _timeline(gw, crm, "owner", "contacts", str(uuid.uuid4())), 404)


async def test_external_events_project_into_timeline(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    tenant = uuid.UUID(crm.tenant_id)
    contact = await _contact(gw, crm, "sales_rep")
    company = (
        await gw.post(
            f"{API}/companies",
            json={"name": f"Pr {uuid.uuid4().hex[:6]}"},
            headers=crm.auth("owner"),
        )
    ).json()
    deal_id = str(uuid.uuid4())
    async with platform.runtime("sales").db.tenant_session(tenant) as session:
        won = await emit(
            session,
            "sales.deal.won",
            tenant,
            {
                "deal_id": deal_id,
                "name": "Big deal",
                "amount": "1200.00",
                "contact_id": contact["id"],
                "company_id": company["id"],
            },
            actor="user:someone",
        )
        # Naming no contact or company: ignored.
        await emit(session, "sales.deal.lost", tenant, {"deal_id": deal_id, "name": "Nobody"})
    async with platform.runtime("support").db.tenant_session(tenant) as session:
        await emit(
            session,
            "support.ticket.opened",
            tenant,
            {
                "ticket_id": str(uuid.uuid4()),
                "title": "Printer on fire",
                "contact_id": contact["id"],
            },
        )

    async def kinds() -> list[str] | None:
        r = await _timeline(gw, crm, "sales_rep", "contacts", contact["id"])
        found = [a["kind"] for a in r.json()["data"]]
        return found if {"deal.won", "ticket.opened"} <= set(found) else None

    found = await eventually(kinds)
    assert sorted(found) == ["deal.won", "ticket.opened"]
    data = (await _timeline(gw, crm, "owner", "contacts", contact["id"])).json()["data"]
    deal = next(a for a in data if a["kind"] == "deal.won")
    assert deal["source"] == "sales" and deal["subject"] == "Big deal"
    assert deal["details"]["amount"] == "1200.00" and deal["details"]["deal_id"] == deal_id
    assert deal["source_event_id"] == str(won.id)
    assert deal["occurred_at"][:19] == won.occurred_at.isoformat()[:19]
    company_tl = (await _timeline(gw, crm, "owner", "companies", company["id"])).json()["data"]
    assert [a["kind"] for a in company_tl] == ["deal.won"]
    # Projected entries are read-only.
    _problem(
        await gw.patch(
            f"{API}/activities/{deal['id']}", json={"subject": "x"}, headers=crm.auth("owner")
        ),
        409,
    )
    _problem(await gw.delete(f"{API}/activities/{deal['id']}", headers=crm.auth("owner")), 409)
    # Another rep does not see the contact, so neither its timeline nor the entry.
    _problem(await _timeline(gw, crm, "sales_rep2", "contacts", contact["id"]), 404)
    _problem(await gw.get(f"{API}/activities/{deal['id']}", headers=crm.auth("sales_rep2")), 404)


async def test_duplicate_delivery_has_one_effect(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    tenant = uuid.UUID(crm.tenant_id)
    contact = await _contact(gw, crm, "owner")
    event = new_event(
        "marketing.email.opened",
        tenant,
        {"campaign_id": str(uuid.uuid4()), "name": "Spring", "contact_id": contact["id"]},
    )
    sentinel = new_event(
        "marketing.email.clicked", tenant, {"name": "Sentinel", "contact_id": contact["id"]}
    )
    nc = await connect_nats(platform.runtime("marketing").settings)
    try:
        js = nc.jetstream()
        # The same event published twice (distinct message ids: the stream keeps both).
        for n, ev in enumerate((event, event, sentinel)):
            await js.publish(
                subject_for(ev.type, tenant),
                msgspec.json.encode(ev),
                headers={"Nats-Msg-Id": f"{ev.id}-{n}"},
            )
    finally:
        await nc.close()

    async def both() -> list[dict] | None:
        data = (await _timeline(gw, crm, "owner", "contacts", contact["id"])).json()["data"]
        kinds = [a["kind"] for a in data]
        return data if "email.clicked" in kinds and "email.opened" in kinds else None

    await eventually(both)
    # The handler itself is idempotent too (no inbox in front of it here).
    runtime = platform.runtime("contacts")
    for _ in range(2):
        async with runtime.db.tenant_session(tenant) as session:
            await project_event(EventContext(event, session, runtime.db, "test", "test"))
    data = (await _timeline(gw, crm, "owner", "contacts", contact["id"])).json()["data"]
    assert sorted(a["kind"] for a in data) == ["email.clicked", "email.opened"]


async def test_field_history(platform_gateway: httpx.AsyncClient, crm: CrmTenant) -> None:
    gw = platform_gateway
    owner = crm.auth("owner")
    contact = await _contact(gw, crm, "owner", title="Engineer")
    r = await gw.patch(f"{API}/contacts/{contact['id']}", json={"title": "CTO"}, headers=owner)
    assert r.status_code == 200, r.text
    actor = r.json()["updated_by"]
    url = f"{API}/audit/history/contact/{contact['id']}"
    body = (await gw.get(url, headers=owner)).json()
    newest = body["data"][0]
    assert newest["field"] == "title" and newest["reason"] == "update"
    assert (newest["from"], newest["to"]) == ("Engineer", "CTO")
    assert newest["actor"] == actor
    ids = [c["id"] for c in body["data"]]
    assert ids == sorted(ids, reverse=True)
    # Paging one by one walks the same rows.
    walked, cursor = [], None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = (await gw.get(url, params=params, headers=crm.auth("admin"))).json()
        walked += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == ids
    for who in ("sales_rep", "sales_manager", "viewer"):
        _problem(await gw.get(url, headers=crm.auth(who)), 403)
    _problem(await gw.get(f"{API}/audit/history/contact/{uuid.uuid4()}", headers=owner), 404)
    _problem(await gw.get(f"{API}/audit/history/deal/{contact['id']}", headers=owner), 404)
    # Deleted records keep their history for admins.
    assert (await gw.delete(f"{API}/contacts/{contact['id']}", headers=owner)).status_code == 204
    after = (await gw.get(url, headers=crm.auth("admin"))).json()["data"]
    assert after[0]["field"] == "deleted" and after[0]["reason"] == "delete"


async def test_access_audit_lists_reassign(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    owner = crm.auth("owner")
    contact = await _contact(gw, crm, "owner")
    r = await gw.post(
        f"{API}/contacts/bulk/reassign",
        json={"ids": [contact["id"]], "owner_id": crm.user_ids["sales_rep"]},
        headers=owner,
    )
    assert r.status_code == 200 and r.json()["updated"] == [contact["id"]], r.text
    body = (
        await gw.get(f"{API}/audit/access", params={"action": "reassign"}, headers=owner)
    ).json()
    assert body["data"] and all(row["action"] == "reassign" for row in body["data"])
    newest = body["data"][0]
    assert newest["entity"] == "contact" and newest["record_count"] == 1
    assert newest["details"]["owner_id"] == crm.user_ids["sales_rep"]
    assert contact["id"] in newest["details"]["ids"]
    first = (await gw.get(f"{API}/audit/access", params={"limit": "1"}, headers=owner)).json()
    assert len(first["data"]) == 1
    none = await gw.get(f"{API}/audit/access", params={"action": "nope"}, headers=owner)
    assert none.json() == {"data": [], "next_cursor": None}
    for who in ("sales_rep", "sales_manager", "marketer", "viewer"):
        _problem(await gw.get(f"{API}/audit/access", headers=crm.auth(who)), 403)


async def test_company_timeline_rolls_up_visible_linked_contacts(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    company = (
        await gw.post(
            f"{API}/companies",
            json={"name": f"Roll {uuid.uuid4().hex[:6]}", "owner_id": crm.user_ids["sales_rep"]},
            headers=crm.auth("owner"),
        )
    ).json()
    mine = await _contact(gw, crm, "sales_rep", company_id=company["id"])
    # A rep names only companies they see: the owner files rep2's contact at this one.
    theirs = await _contact(
        gw, crm, "owner", company_id=company["id"], owner_id=crm.user_ids["sales_rep2"]
    )
    elsewhere = await _contact(gw, crm, "sales_rep")
    on_company = await _log(gw, crm, "owner", company_id=company["id"], subject="QBR")
    on_mine = await _log(gw, crm, "owner", contact_id=mine["id"], subject="Mine")
    on_theirs = await _log(gw, crm, "owner", contact_id=theirs["id"], subject="Theirs")
    await _log(gw, crm, "owner", contact_id=elsewhere["id"], subject="Unrelated")

    def ids(r: httpx.Response) -> set[str]:
        assert r.status_code == 200, r.text
        return {a["id"] for a in r.json()["data"]}

    plain = ids(await _timeline(gw, crm, "owner", "companies", company["id"]))
    assert plain == {on_company["id"]}
    rolled = await _timeline(gw, crm, "owner", "companies", company["id"], include_contacts="true")
    assert ids(rolled) == {on_company["id"], on_mine["id"], on_theirs["id"]}
    # The rep sees the company (they own it) but only the linked contacts they may see.
    rep_view = await _timeline(
        gw, crm, "sales_rep", "companies", company["id"], include_contacts="true"
    )
    assert ids(rep_view) == {on_company["id"], on_mine["id"]}
