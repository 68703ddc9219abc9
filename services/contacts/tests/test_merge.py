"""Merging contacts and companies: preview, merge, re-pointing in sales/support, undo."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import insert, select

from crm_dev.testing import RunningPlatform, eventually
from crm_sales.models import ContactCard, Deal, Pipeline, Stage
from crm_support.models import Ticket
from services.contacts.tests.conftest import CrmTenant

API = "/api/v1"


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, f"{r.status_code} {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


async def _contact(gw: httpx.AsyncClient, crm: CrmTenant, who: str, **body: object) -> dict:
    payload = {"first_name": "Merge", "last_name": uuid.uuid4().hex[:8], **body}
    r = await gw.post(f"{API}/contacts?allow_duplicate=true", json=payload, headers=crm.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


async def _company(gw: httpx.AsyncClient, crm: CrmTenant, **body: object) -> dict:
    payload = {"name": f"Co {uuid.uuid4().hex[:8]}", **body}
    r = await gw.post(f"{API}/companies", json=payload, headers=crm.auth("owner"))
    assert r.status_code == 201, r.text
    return r.json()


async def add_deal(
    platform: RunningPlatform,
    crm: CrmTenant,
    *,
    contact_id: str | None = None,
    company_id: str | None = None,
) -> uuid.UUID:
    """A deal row in the sales service (no sales API yet): its own tenant session."""
    pipeline, stage, deal = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with platform.runtime("sales").db.tenant_session(uuid.UUID(crm.tenant_id)) as s:
        await s.execute(insert(Pipeline).values(id=pipeline, name="Pipeline"))
        await s.execute(
            insert(Stage).values(id=stage, pipeline_id=pipeline, name="New", position=1)
        )
        await s.execute(
            insert(Deal).values(
                id=deal,
                title="Big deal",
                stage_id=stage,
                contact_id=uuid.UUID(contact_id) if contact_id else None,
                company_id=uuid.UUID(company_id) if company_id else None,
            )
        )
    return deal


async def add_ticket(
    platform: RunningPlatform, crm: CrmTenant, contact_id: str, description: str = "Help"
) -> uuid.UUID:
    ticket = uuid.uuid4()
    async with platform.runtime("support").db.tenant_session(uuid.UUID(crm.tenant_id)) as s:
        await s.execute(
            insert(Ticket).values(
                id=ticket,
                subject="Printer on fire",
                description=description,
                requester_contact_id=uuid.UUID(contact_id),
            )
        )
    return ticket


async def deal_refs(platform: RunningPlatform, crm: CrmTenant, deal: uuid.UUID) -> tuple[str, str]:
    async with platform.runtime("sales").db.tenant_session(uuid.UUID(crm.tenant_id)) as s:
        row = (await s.execute(select(Deal).where(Deal.id == deal))).scalar_one()
        return str(row.contact_id), str(row.company_id)


async def card(platform: RunningPlatform, crm: CrmTenant, contact_id: str) -> ContactCard | None:
    async with platform.runtime("sales").db.tenant_session(uuid.UUID(crm.tenant_id)) as s:
        return (
            await s.execute(select(ContactCard).where(ContactCard.id == uuid.UUID(contact_id)))
        ).scalar_one_or_none()


async def requester(platform: RunningPlatform, crm: CrmTenant, ticket: uuid.UUID) -> str:
    async with platform.runtime("support").db.tenant_session(uuid.UUID(crm.tenant_id)) as s:
        row = (await s.execute(select(Ticket).where(Ticket.id == ticket))).scalar_one()
        return str(row.requester_contact_id)


def _field(preview: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in preview["fields"] if f["field"] == name)


async def test_merge_preview_merge_undo_propagates(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    owner = crm.auth("owner")
    tag = uuid.uuid4().hex[:6]
    first, second = await _company(gw, crm), await _company(gw, crm)
    winner = await _contact(
        gw,
        crm,
        "owner",
        first_name="Ada",
        last_name=f"Lovelace{tag}",
        emails=[{"address": f"ada{tag}@example.com"}],
        phones=[{"number": "+1 555 0100"}],
        tags=[f"vip-{tag}"],
        company_id=first["id"],
    )
    loser = await _contact(
        gw,
        crm,
        "owner",
        first_name="Ada",
        last_name=f"King{tag}",
        title="Countess",
        emails=[{"address": f"countess{tag}@example.com"}, {"address": f"ada{tag}@example.com"}],
        tags=[f"lead-{tag}"],
        company_id=second["id"],
    )
    r = await gw.post(
        f"{API}/activities",
        json={"kind": "note", "contact_id": loser["id"], "subject": "Met at the fair"},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    activity = r.json()["id"]
    deal = await add_deal(platform, crm, contact_id=loser["id"])
    ticket = await add_ticket(platform, crm, loser["id"])
    # The sales read model learns both contacts from contacts' events.
    await eventually(lambda: card(platform, crm, loser["id"]))
    body = {
        "winner_id": winner["id"],
        "loser_ids": [loser["id"]],
        "choices": {"last_name": loser["id"]},
    }

    # Preview: field by field, nothing written.
    r = await gw.post(f"{API}/contacts/merge/preview", json=body, headers=owner)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["merge_id"] is None
    last = _field(preview, "last_name")
    assert last["chosen_from"] == loser["id"] and last["value"] == f"King{tag}"
    assert {c["value"] for c in last["candidates"]} == {f"Lovelace{tag}", f"King{tag}"}
    title = _field(preview, "title")  # the winner has none: the loser's fills in
    assert title["chosen_from"] == loser["id"] and title["value"] == "Countess"
    assert _field(preview, "company_id")["value"] == first["id"]
    result = preview["result"]
    assert [e["address"] for e in result["emails"]] == [
        f"ada{tag}@example.com",
        f"countess{tag}@example.com",
    ]
    assert sorted(t["name"] for t in result["tags"]) == [f"lead-{tag}", f"vip-{tag}"]
    assert preview["repointed"] == {"activities": 1, "company_links": 1}
    got = await gw.get(f"{API}/contacts/{winner['id']}", headers=owner)
    assert got.json()["version"] == winner["version"]
    assert got.json()["last_name"] == f"Lovelace{tag}"
    assert (await gw.get(f"{API}/contacts/{loser['id']}", headers=owner)).status_code == 200

    # Merge: a stale If-Match is refused, the right one merges.
    stale = await gw.post(f"{API}/contacts/merge", json=body, headers={**owner, "If-Match": '"99"'})
    _problem(stale, 412)
    r = await gw.post(
        f"{API}/contacts/merge",
        json=body,
        headers={**owner, "If-Match": f'"{winner["version"]}"'},
    )
    assert r.status_code == 201, r.text
    merged = r.json()
    merge_id = merged["merge_id"]
    assert r.headers["Location"] == f"{API}/merges/{merge_id}"
    assert merged["status"] == "merged" and merged["undo_until"]
    assert merged["result"]["last_name"] == f"King{tag}"
    assert merged["result"]["title"] == "Countess"
    assert len(merged["result"]["emails"]) == 2

    # The loser is gone: 404 on read, absent from lists and search.
    _problem(await gw.get(f"{API}/contacts/{loser['id']}", headers=owner), 404)
    found = await gw.get(f"{API}/contacts", params={"q": f"countess{tag}"}, headers=owner)
    hits = {c["id"] for c in found.json()["data"]}
    assert winner["id"] in hits and loser["id"] not in hits
    listed = await gw.get(f"{API}/contacts", params={"tag": f"lead-{tag}"}, headers=owner)
    assert [c["id"] for c in listed.json()["data"]] == [winner["id"]]
    links = (await gw.get(f"{API}/contacts/{winner['id']}/companies", headers=owner)).json()
    assert {link["company_id"] for link in links} == {first["id"], second["id"]}
    timeline = await gw.get(f"{API}/timeline/contacts/{winner['id']}", headers=owner)
    assert activity in [a["id"] for a in timeline.json()["data"]]
    history = await gw.get(f"{API}/audit/history/contact/{loser['id']}", headers=owner)
    assert any(h["field"] == "merged_into" for h in history.json()["data"])
    audit = await gw.get(f"{API}/audit/access", params={"action": "merge"}, headers=owner)
    assert any(a["details"]["merge_id"] == merge_id for a in audit.json()["data"])
    info = await gw.get(f"{API}/merges/{merge_id}", headers=owner)
    assert info.status_code == 200, info.text
    assert info.json()["winner_id"] == winner["id"]
    assert info.json()["loser_ids"] == [loser["id"]]
    assert info.json()["status"] == "merged"
    where = await gw.get(f"{API}/merges", params={"record_id": loser["id"]}, headers=owner)
    assert [m["id"] for m in where.json()["data"]] == [merge_id]

    # Sales and support re-point their references to the winner.
    async def moved() -> bool:
        loser_card = await card(platform, crm, loser["id"])
        return (
            (await deal_refs(platform, crm, deal))[0] == winner["id"]
            and await requester(platform, crm, ticket) == winner["id"]
            and loser_card is not None
            and loser_card.status == "merged"
        )

    await eventually(moved)
    winner_card = await card(platform, crm, winner["id"])
    assert winner_card is not None and winner_card.last_name == f"King{tag}"

    # Undo: both sides come back, here and in the other services.
    r = await gw.post(f"{API}/merges/{merge_id}/undo", headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "undone"
    assert r.json()["result"]["last_name"] == f"Lovelace{tag}"
    assert [e["address"] for e in r.json()["result"]["emails"]] == [f"ada{tag}@example.com"]
    back = await gw.get(f"{API}/contacts/{loser['id']}", headers=owner)
    assert back.status_code == 200 and back.json()["title"] == "Countess"
    links = (await gw.get(f"{API}/contacts/{winner['id']}/companies", headers=owner)).json()
    assert [link["company_id"] for link in links] == [first["id"]]
    timeline = await gw.get(f"{API}/timeline/contacts/{loser['id']}", headers=owner)
    assert activity in [a["id"] for a in timeline.json()["data"]]

    async def restored() -> bool:
        loser_card = await card(platform, crm, loser["id"])
        winner_card = await card(platform, crm, winner["id"])
        return (
            (await deal_refs(platform, crm, deal))[0] == loser["id"]
            and await requester(platform, crm, ticket) == loser["id"]
            and loser_card is not None
            and loser_card.status == "active"
            and winner_card is not None
            and winner_card.last_name == f"Lovelace{tag}"
        )

    await eventually(restored)
    _problem(await gw.post(f"{API}/merges/{merge_id}/undo", headers=owner), 409)


async def test_merge_rules_and_roles(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, other_crm: CrmTenant
) -> None:
    gw = platform_gateway
    mine = await _contact(gw, crm, "sales_rep")
    mine_too = await _contact(gw, crm, "sales_rep", title="Buyer")
    theirs = await _contact(gw, crm, "sales_rep2")
    url = f"{API}/contacts/merge"
    rep = crm.auth("sales_rep")

    # A rep cannot merge (or preview) what they cannot see: 404, never a hint.
    body = {"winner_id": mine["id"], "loser_ids": [theirs["id"]]}
    _problem(await gw.post(url, json=body, headers=rep), 404)
    _problem(await gw.post(f"{url}/preview", json=body, headers=rep), 404)
    # Viewers see but change nothing; anonymous callers and other tenants get nothing.
    body = {"winner_id": mine["id"], "loser_ids": [mine_too["id"]]}
    _problem(await gw.post(url, json=body, headers=crm.auth("viewer")), 403)
    assert (await gw.post(url, json=body)).status_code == 401
    _problem(await gw.post(url, json=body, headers=other_crm.auth("owner")), 404)
    # Bad requests.
    _problem(
        await gw.post(url, json={"winner_id": mine["id"], "loser_ids": [mine["id"]]}, headers=rep),
        422,
    )
    r = await gw.post(url, json={"winner_id": mine["id"], "loser_ids": []}, headers=rep)
    assert r.status_code in (400, 422), r.text
    _problem(
        await gw.post(url, json={**body, "choices": {"no_such_field": mine["id"]}}, headers=rep),
        422,
    )
    _problem(
        await gw.post(url, json={**body, "choices": {"title": theirs["id"]}}, headers=rep), 422
    )
    # A rep merges their own records; choosing another owner would be a reassign (403).
    r = await gw.post(url, json=body, headers=rep)
    assert r.status_code == 201, r.text
    merge_id = r.json()["merge_id"]
    assert r.json()["result"]["title"] == "Buyer"
    # The merge is visible to who sees the winner; not to a rep who cannot.
    assert (await gw.get(f"{API}/merges/{merge_id}", headers=rep)).status_code == 200
    _problem(await gw.get(f"{API}/merges/{merge_id}", headers=crm.auth("sales_rep2")), 404)
    _problem(await gw.get(f"{API}/merges/{merge_id}", headers=other_crm.auth("owner")), 404)
    _problem(await gw.post(f"{API}/merges/{merge_id}/undo", headers=crm.auth("viewer")), 403)
    # Once the winner changed after the merge, undo would lose that change: 409.
    r = await gw.patch(f"{API}/contacts/{mine['id']}", json={"title": "CTO"}, headers=rep)
    assert r.status_code == 200, r.text
    problem = _problem(await gw.post(f"{API}/merges/{merge_id}/undo", headers=rep), 409)
    assert "changed after the merge" in problem["detail"]
    _problem(await gw.get(f"{API}/merges/{uuid.uuid4()}", headers=rep), 404)


async def test_company_merge_moves_contacts_and_deals(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    owner = crm.auth("owner")
    tag = uuid.uuid4().hex[:6]
    keep = await _company(gw, crm, domain=f"keep{tag}.example.com")
    gone = await _company(gw, crm, domain=f"gone{tag}.example.com", industry="Retail")
    person = await _contact(gw, crm, "owner", company_id=gone["id"])
    deal = await add_deal(platform, crm, contact_id=person["id"], company_id=gone["id"])

    body = {
        "winner_id": keep["id"],
        "loser_ids": [gone["id"]],
        "choices": {"domain": gone["id"]},
    }
    r = await gw.post(f"{API}/companies/merge/preview", json=body, headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["domain"] == f"gone{tag}.example.com"
    assert r.json()["result"]["industry"] == "Retail"
    assert r.json()["repointed"]["contacts"] == 1
    r = await gw.post(f"{API}/companies/merge", json=body, headers=owner)
    assert r.status_code == 201, r.text
    merge_id = r.json()["merge_id"]
    _problem(await gw.get(f"{API}/companies/{gone['id']}", headers=owner), 404)
    moved = await gw.get(f"{API}/contacts/{person['id']}", headers=owner)
    assert moved.json()["company_id"] == keep["id"]
    links = (await gw.get(f"{API}/contacts/{person['id']}/companies", headers=owner)).json()
    assert [(x["company_id"], x["primary"]) for x in links] == [(keep["id"], True)]

    async def deal_on(company: str) -> bool:
        return (await deal_refs(platform, crm, deal))[1] == company

    await eventually(lambda: deal_on(keep["id"]))

    r = await gw.post(f"{API}/merges/{merge_id}/undo", headers=owner)
    assert r.status_code == 200, r.text
    back = await gw.get(f"{API}/contacts/{person['id']}", headers=owner)
    assert back.json()["company_id"] == gone["id"]
    links = (await gw.get(f"{API}/contacts/{person['id']}/companies", headers=owner)).json()
    assert [(x["company_id"], x["primary"]) for x in links] == [(gone["id"], True)]
    kept = await gw.get(f"{API}/companies/{keep['id']}", headers=owner)
    assert kept.json()["domain"] == f"keep{tag}.example.com"
    await eventually(lambda: deal_on(gone["id"]))


async def test_merge_custom_and_sensitive_fields(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    admin = crm.auth("admin")
    tag = uuid.uuid4().hex[:6]
    secret, plain = f"passport_{tag}", f"tier_{tag}"
    for key, sensitive in ((secret, True), (plain, False)):
        r = await gw.post(
            f"{API}/custom-fields",
            json={
                "entity": "contact",
                "key": key,
                "label": key,
                "type": "text",
                "sensitive": sensitive,
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
    winner = await _contact(gw, crm, "owner", custom_fields={plain: "gold"})
    loser = await _contact(gw, crm, "owner", custom_fields={plain: "silver", secret: "X1234567"})
    body = {
        "winner_id": winner["id"],
        "loser_ids": [loser["id"]],
        "choices": {f"custom_fields.{plain}": loser["id"]},
    }
    # A marketer changes records but may not delete them, so cannot merge them away.
    r = await gw.post(f"{API}/contacts/merge/preview", json=body, headers=crm.auth("marketer"))
    assert r.status_code == 403, r.text
    # A sales manager may merge but not read the sensitive value: masked in the preview.
    r = await gw.post(f"{API}/contacts/merge/preview", json=body, headers=crm.auth("sales_manager"))
    assert r.status_code == 200, r.text
    masked = _field(r.json(), f"custom_fields.{secret}")
    assert masked["chosen_from"] == loser["id"] and "X1234567" not in str(masked)
    r = await gw.post(f"{API}/contacts/merge", json=body, headers=admin)
    assert r.status_code == 201, r.text
    custom = r.json()["result"]["custom_fields"]
    assert custom[plain] == "silver"
    # The loser's sealed value was re-encrypted for the winner: it still reads back.
    assert custom[secret] == "X1234567"
    got = await gw.get(f"{API}/contacts/{winner['id']}", headers=admin)
    assert got.json()["custom_fields"][secret] == "X1234567"
    merged_event_changes = r.json()["changes"]
    assert merged_event_changes[f"custom_fields.{secret}"]["to"] == "[sensitive]"
    undone = await gw.post(f"{API}/merges/{r.json()['merge_id']}/undo", headers=admin)
    assert undone.status_code == 200, undone.text
    assert undone.json()["result"]["custom_fields"] == {plain: "gold"}
    back = await gw.get(f"{API}/contacts/{loser['id']}", headers=admin)
    assert back.json()["custom_fields"] == {plain: "silver", secret: "X1234567"}
