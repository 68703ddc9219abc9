"""Batch create/update/upsert (per-item results, savepoints) and saved views, via the gateway."""

from __future__ import annotations

import uuid

import httpx
import msgspec

from crm_dev.testing import RunningPlatform, eventually
from crm_lib.events import Event
from services.contacts.tests.conftest import CrmTenant

API = "/api/v1"


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


async def _names(gw: httpx.AsyncClient, crm: CrmTenant, who: str, marker: str) -> set[str]:
    r = await gw.get(
        f"{API}/contacts", params={"last_name": marker, "limit": 100}, headers=crm.auth(who)
    )
    assert r.status_code == 200, r.text
    return {c["first_name"] for c in r.json()["data"]}


async def test_batch_create_reports_each_item_and_keeps_failures_out(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, platform: RunningPlatform
) -> None:
    gw, h, marker = platform_gateway, crm.auth("admin"), f"Batch{_tag()}"
    taken = f"taken-{_tag()}@example.com"
    r = await gw.post(
        f"{API}/contacts",
        json={"first_name": "Existing", "emails": [{"address": taken}]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    existing_id = r.json()["id"]

    nc = await platform.runtime("contacts").nats()
    created_events: list[Event] = []

    async def collect(msg: object) -> None:
        created_events.append(msgspec.json.decode(msg.data, type=Event))  # type: ignore[attr-defined]

    sub = await nc.subscribe(f"crm.{crm.tenant_id}.contacts.contact.created", cb=collect)
    try:
        items = [
            {
                "first_name": "Ann",
                "last_name": marker,
                "emails": [{"address": f"ann-{_tag()}@example.com"}],
            },
            {"first_name": 42, "last_name": marker},
            {"first_name": "Dup", "last_name": marker, "emails": [{"address": taken.upper()}]},
            {"first_name": "Bob", "last_name": marker, "tags": [f"batch-{_tag()}"]},
            {"last_name": None, "title": "Nobody"},
            {"first_name": "Cat", "last_name": marker, "unknown_field": 1},
        ]
        r = await gw.post(f"{API}/contacts/batch/create", json={"items": items}, headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        statuses = [(x["index"], x["status"], x["action"]) for x in body["results"]]
        assert statuses == [
            (0, 201, "created"),
            (1, 422, "failed"),
            (2, 409, "failed"),
            (3, 201, "created"),
            (4, 422, "failed"),
            (5, 422, "failed"),
        ]
        assert (body["created"], body["updated"], body["unchanged"], body["failed"]) == (2, 0, 0, 4)
        results = body["results"]
        assert results[0]["record"]["first_name"] == "Ann" and results[0]["record"]["version"] == 1
        assert results[1]["problem"]["errors"][0]["field"] == "first_name"
        assert results[2]["problem"]["duplicates"][0]["id"] == existing_id
        assert "unknown_field" in results[5]["problem"]["detail"]
        assert results[3]["record"]["tags"][0]["name"].startswith("batch-")
        # Only the successful items exist, and only they were announced.
        assert await _names(gw, crm, "admin", marker) == {"Ann", "Bob"}
        ok_ids = {results[0]["id"], results[3]["id"]}
        await eventually(lambda: {e.data["contact_id"] for e in created_events} >= ok_ids)
        announced = {e.data["contact_id"] for e in created_events}
        assert announced == ok_ids
    finally:
        await sub.unsubscribe()

    # Duplicates can be forced, as with ?allow_duplicate=true on a single create.
    r = await gw.post(
        f"{API}/contacts/batch/create",
        json={
            "items": [{"first_name": "Dup", "emails": [{"address": taken}]}],
            "allow_duplicates": True,
        },
        headers=h,
    )
    assert r.json()["results"][0]["status"] == 201, r.text


async def test_batch_limits_and_roles(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, other_crm: CrmTenant
) -> None:
    gw = platform_gateway
    too_many = {"items": [{"first_name": f"N{i}"} for i in range(101)]}
    problem = _problem(
        await gw.post(f"{API}/contacts/batch/create", json=too_many, headers=crm.auth("admin")), 422
    )
    assert problem["errors"][0]["field"] == "items" and "100" in problem["errors"][0]["message"]
    _problem(
        await gw.post(
            f"{API}/contacts/batch/create", json={"items": []}, headers=crm.auth("admin")
        ),
        422,
    )
    one = {"items": [{"first_name": "Viewer"}]}
    _problem(
        await gw.post(f"{API}/contacts/batch/create", json=one, headers=crm.auth("viewer")), 403
    )
    _problem(
        await gw.post(
            f"{API}/companies/batch/upsert",
            json={"key": "domain", **one},
            headers=crm.auth("viewer"),
        ),
        403,
    )
    assert (await gw.post(f"{API}/contacts/batch/create", json=one)).status_code == 401
    # Another tenant's ids are simply not found, item by item.
    r = await gw.post(f"{API}/contacts", json={"first_name": "Mine"}, headers=crm.auth("admin"))
    mine = r.json()["id"]
    r = await gw.post(
        f"{API}/contacts/batch/update",
        json={"items": [{"id": mine, "changes": {"title": "Stolen"}}]},
        headers=other_crm.auth("owner"),
    )
    assert r.status_code == 200 and r.json()["results"][0]["status"] == 404, r.text
    got = await gw.get(f"{API}/contacts/{mine}", headers=crm.auth("admin"))
    assert got.json()["title"] is None


async def test_batch_update_versions_visibility_and_noops(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw, marker = platform_gateway, f"Upd{_tag()}"
    admin = crm.auth("admin")
    ids = []
    for name, owner in (("Own", "sales_rep"), ("Other", "sales_rep2"), ("Third", "sales_rep")):
        r = await gw.post(
            f"{API}/contacts",
            json={"first_name": name, "last_name": marker, "owner_id": crm.user_ids[owner]},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    own, other, third = ids
    items = [
        {"id": own, "version": 1, "changes": {"title": "VP"}},
        {"id": other, "changes": {"title": "Hijack"}},
        {"id": third, "version": 7, "changes": {"title": "Late"}},
        {"id": third, "changes": {"first_name": "Third"}},
        {"id": own, "changes": {"lifecycle_stage": "galaxy"}},
    ]
    r = await gw.post(
        f"{API}/contacts/batch/update", json={"items": items}, headers=crm.auth("sales_rep")
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["status"], x["action"]) for x in results] == [
        (200, "updated"),
        (404, "failed"),
        (412, "failed"),
        (200, "unchanged"),
        (422, "failed"),
    ]
    assert results[0]["record"]["version"] == 2 and results[0]["record"]["title"] == "VP"
    assert results[3]["record"]["version"] == 1
    got = (await gw.get(f"{API}/contacts/{other}", headers=admin)).json()
    assert got["title"] is None and got["version"] == 1
    got = (await gw.get(f"{API}/contacts/{own}", headers=admin)).json()
    assert got["lifecycle_stage"] == "lead" and got["version"] == 2


async def test_batch_upsert_is_idempotent_and_respects_ownership(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw, marker = platform_gateway, f"Ups{_tag()}"
    h = crm.auth("sales_manager")
    items = [
        {
            "first_name": f"P{i}",
            "last_name": marker,
            "emails": [{"address": f"p{i}-{marker}@Example.com"}],
        }
        for i in range(3)
    ]
    first = (
        await gw.post(
            f"{API}/contacts/batch/upsert", json={"key": "email", "items": items}, headers=h
        )
    ).json()
    assert (first["created"], first["updated"], first["unchanged"]) == (3, 0, 0), first
    again = (
        await gw.post(
            f"{API}/contacts/batch/upsert", json={"key": "email", "items": items}, headers=h
        )
    ).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3), again
    assert [x["id"] for x in again["results"]] == [x["id"] for x in first["results"]]
    assert {x["record"]["version"] for x in again["results"]} == {1}
    items[1]["title"] = "Head of Ops"
    third = (
        await gw.post(
            f"{API}/contacts/batch/upsert", json={"key": "email", "items": items}, headers=h
        )
    ).json()
    assert (third["created"], third["updated"], third["unchanged"]) == (0, 1, 2), third
    assert third["results"][1]["record"]["title"] == "Head of Ops"

    # external_id as key; a missing key value is that item's 422.
    ext = f"ext-{marker}"
    r = await gw.post(
        f"{API}/contacts/batch/upsert",
        json={
            "key": "external_id",
            "items": [{"first_name": "X", "external_id": ext}, {"first_name": "NoKey"}],
        },
        headers=h,
    )
    assert [x["status"] for x in r.json()["results"]] == [201, 422], r.text
    _problem(
        await gw.post(
            f"{API}/contacts/batch/upsert", json={"key": "phone", "items": items}, headers=h
        ),
        422,
    )

    # A rep's upsert that hits someone else's record does not touch it.
    r = await gw.post(
        f"{API}/contacts/batch/upsert",
        json={"key": "email", "items": [{**items[0], "title": "Rep was here"}]},
        headers=crm.auth("sales_rep"),
    )
    result = r.json()["results"][0]
    assert result["status"] == 409, r.text
    got = (await gw.get(f"{API}/contacts/{first['results'][0]['id']}", headers=h)).json()
    assert got["title"] is None

    # Companies upsert on their domain.
    domain = f"{marker.lower()}.example.com"
    body = {"key": "domain", "items": [{"name": "Acme", "domain": domain.upper()}]}
    one = (await gw.post(f"{API}/companies/batch/upsert", json=body, headers=h)).json()
    two = (await gw.post(f"{API}/companies/batch/upsert", json=body, headers=h)).json()
    assert (one["created"], two["unchanged"]) == (1, 1), (one, two)


async def test_saved_views(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, other_crm: CrmTenant
) -> None:
    gw, marker = platform_gateway, f"View{_tag()}"
    admin, manager, rep = crm.auth("admin"), crm.auth("sales_manager"), crm.auth("sales_rep")
    for name, stage, owner in (
        ("Ava", "customer", "sales_rep"),
        ("Ben", "customer", "sales_rep2"),
        ("Cy", "lead", "sales_rep"),
    ):
        r = await gw.post(
            f"{API}/contacts",
            json={
                "first_name": name,
                "last_name": marker,
                "lifecycle_stage": stage,
                "owner_id": crm.user_ids[owner],
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text

    # Bad filters are refused and nothing is saved.
    for bad in (
        {"filters": {"nope": "1"}},
        {"filters": {"lifecycle_stage__between": "a"}},
        {"sort": "-shoe_size"},
        {"columns": ["id", "password"]},
        {"filters": {"cursor": "abc"}},
    ):
        _problem(
            await gw.post(
                f"{API}/views", json={"entity": "contact", "name": "Bad", **bad}, headers=manager
            ),
            422,
        )
    assert [
        v for v in (await gw.get(f"{API}/views", headers=manager)).json() if v["name"] == "Bad"
    ] == []

    view = {
        "entity": "contact",
        "name": f"Customers {marker}",
        "filters": {"lifecycle_stage": "customer", "last_name": marker},
        "sort": "first_name",
        "columns": ["id", "first_name", "lifecycle_stage"],
    }
    r = await gw.post(f"{API}/views", json=view, headers=manager)
    assert r.status_code == 201, r.text
    personal = r.json()
    assert personal["editable"] and not personal["shared"] and r.headers["ETag"] == '"1"'

    got = await gw.get(f"{API}/contacts", params={"view": personal["id"]}, headers=manager)
    assert got.status_code == 200, got.text
    rows = got.json()["data"]
    assert [c["first_name"] for c in rows] == ["Ava", "Ben"]
    assert set(rows[0]) == {"id", "version", "first_name", "lifecycle_stage"}
    # The request's own parameters override the view's, key by key.
    got = await gw.get(
        f"{API}/contacts", params={"view": personal["id"], "sort": "-first_name"}, headers=manager
    )
    assert [c["first_name"] for c in got.json()["data"]] == ["Ben", "Ava"]

    # Personal: invisible to others until shared; sharing keeps each caller's visibility.
    _problem(await gw.get(f"{API}/views/{personal['id']}", headers=rep), 404)
    _problem(await gw.get(f"{API}/contacts", params={"view": personal["id"]}, headers=rep), 404)
    r = await gw.patch(
        f"{API}/views/{personal['id']}",
        json={"shared": True},
        headers={**manager, "If-Match": '"1"'},
    )
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    got = await gw.get(f"{API}/contacts", params={"view": personal["id"]}, headers=rep)
    assert [c["first_name"] for c in got.json()["data"]] == ["Ava"]
    listed = (await gw.get(f"{API}/views", params={"entity": "contact"}, headers=rep)).json()
    mine = [v for v in listed if v["id"] == personal["id"]]
    assert mine and mine[0]["editable"] is False
    _problem(await gw.get(f"{API}/companies", params={"view": personal["id"]}, headers=rep), 422)

    # Only the creator, or an admin for a shared view, changes it; stale If-Match is 412.
    _problem(
        await gw.patch(f"{API}/views/{personal['id']}", json={"name": "Mine now"}, headers=rep), 403
    )
    _problem(
        await gw.patch(
            f"{API}/views/{personal['id']}",
            json={"name": "X"},
            headers={**admin, "If-Match": '"1"'},
        ),
        412,
    )
    r = await gw.patch(
        f"{API}/views/{personal['id']}", json={"name": "Team customers"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["name"] == "Team customers", r.text

    # Viewers keep personal views but cannot share; other tenants never see ours.
    r = await gw.post(f"{API}/views", json={**view, "name": "Viewer's"}, headers=crm.auth("viewer"))
    assert r.status_code == 201, r.text
    _problem(
        await gw.post(f"{API}/views", json={**view, "shared": True}, headers=crm.auth("viewer")),
        403,
    )
    _problem(await gw.get(f"{API}/views/{personal['id']}", headers=other_crm.auth("owner")), 404)
    _problem(
        await gw.get(
            f"{API}/contacts", params={"view": personal["id"]}, headers=other_crm.auth("owner")
        ),
        404,
    )
    _problem(await gw.delete(f"{API}/views/{personal['id']}", headers=other_crm.auth("owner")), 404)
    assert (await gw.get(f"{API}/views")).status_code == 401

    assert (await gw.delete(f"{API}/views/{personal['id']}", headers=manager)).status_code == 204
    _problem(await gw.get(f"{API}/views/{personal['id']}", headers=manager), 404)


async def test_bulk_reads_are_audited(platform_gateway: httpx.AsyncClient, crm: CrmTenant) -> None:
    gw, marker = platform_gateway, f"Bulk{_tag()}"
    admin = crm.auth("admin")
    for start in (0, 100):
        items = [{"first_name": f"R{start + i}", "last_name": marker} for i in range(100)]
        r = await gw.post(f"{API}/contacts/batch/create", json={"items": items}, headers=admin)
        assert r.json()["created"] == 100, r.text
    small = await gw.get(
        f"{API}/contacts", params={"last_name": marker, "limit": 50}, headers=admin
    )
    assert len(small.json()["data"]) == 50
    big = await gw.get(f"{API}/contacts", params={"last_name": marker, "limit": 500}, headers=admin)
    assert len(big.json()["data"]) == 200
    rows = (
        await gw.get(
            f"{API}/audit/access", params={"action": "bulk_read"}, headers=crm.auth("owner")
        )
    ).json()["data"]
    mine = [row for row in rows if row["details"]["filters"].get("last_name") == marker]
    assert len(mine) == 1, rows
    assert mine[0]["record_count"] == 200 and mine[0]["entity"] == "contact"
    assert mine[0]["actor"]
