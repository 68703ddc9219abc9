"""Contacts through the real gateway: roles, visibility, concurrency, fields, search, tags."""

from __future__ import annotations

import uuid

import httpx
import pytest

from crm_dev.testing import SmtpSink, eventually
from services.contacts.tests.conftest import CrmTenant, make_tenant

API = "/api/v1"
WRITERS = {"owner", "admin", "sales_manager", "sales_rep", "marketer", "support_agent"}
ADMINS = {"owner", "admin"}
EVERYONE = WRITERS | {"viewer"}


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


async def _contact(gw: httpx.AsyncClient, crm: CrmTenant, who: str, **body: object) -> dict:
    payload = {"first_name": "Test", "last_name": uuid.uuid4().hex[:6], **body}
    r = await gw.post(f"{API}/contacts?allow_duplicate=true", json=payload, headers=crm.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.parametrize("role", sorted(EVERYONE))
async def test_role_matrix(platform_gateway: httpx.AsyncClient, crm: CrmTenant, role: str) -> None:
    gw = platform_gateway
    mine = await _contact(gw, crm, "owner", owner_id=crm.user_ids.get(role, crm.user_ids["owner"]))
    cid = mine["id"]
    h = crm.auth(role)
    checks = [
        ("GET", f"{API}/contacts", None, EVERYONE),
        ("GET", f"{API}/contacts/{cid}", None, EVERYONE),
        ("GET", f"{API}/contacts?q=test", None, EVERYONE),
        ("POST", f"{API}/contacts?allow_duplicate=true", {"first_name": "New"}, WRITERS),
        ("PATCH", f"{API}/contacts/{cid}", {"title": "CTO"}, WRITERS),
        ("GET", f"{API}/companies", None, EVERYONE),
        ("POST", f"{API}/companies", {"name": f"Co {uuid.uuid4().hex[:6]}"}, WRITERS),
        ("GET", f"{API}/tags", None, EVERYONE),
        ("POST", f"{API}/tags", {"name": f"t-{uuid.uuid4().hex[:6]}"}, WRITERS),
        ("GET", f"{API}/custom-fields", None, EVERYONE),
        (
            "POST",
            f"{API}/custom-fields",
            {"entity": "contact", "key": f"k_{uuid.uuid4().hex[:6]}", "label": "K", "type": "text"},
            ADMINS,
        ),
        ("GET", f"{API}/visibility-rules", None, ADMINS),
        (
            "POST",
            f"{API}/contacts/bulk/reassign",
            {"ids": [cid], "owner_id": crm.user_ids["owner"]},
            {"owner", "admin", "sales_manager"},
        ),
        ("DELETE", f"{API}/contacts/{cid}", None, {"owner", "admin", "sales_manager", "sales_rep"}),
    ]
    for method, path, body, allowed in checks:
        r = await gw.request(method, path, json=body, headers=h)
        where = f"{role} {method} {path}: {r.status_code} {r.text[:200]}"
        assert r.status_code < 500, where
        if role in allowed:
            assert r.status_code in (200, 201, 204), where
        else:
            assert r.status_code == 403, where
            assert r.headers["content-type"].startswith("application/problem+json"), where


async def test_anonymous_and_other_tenants(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, other_crm: CrmTenant
) -> None:
    gw = platform_gateway
    contact = await _contact(
        gw, crm, "owner", emails=[{"address": f"x-{uuid.uuid4().hex[:6]}@a.example"}]
    )
    _problem(await gw.get(f"{API}/contacts"), 401)
    _problem(await gw.get(f"{API}/contacts/{contact['id']}"), 401)
    # Another tenant's owner: the id does not exist for them, lists and search never show it.
    other = other_crm.auth("owner")
    _problem(await gw.get(f"{API}/contacts/{contact['id']}", headers=other), 404)
    _problem(
        await gw.patch(f"{API}/contacts/{contact['id']}", json={"title": "x"}, headers=other), 404
    )
    _problem(await gw.delete(f"{API}/contacts/{contact['id']}", headers=other), 404)
    listed = (await gw.get(f"{API}/contacts?limit=500", headers=other)).json()["data"]
    assert contact["id"] not in {c["id"] for c in listed}
    found = (
        await gw.get(f"{API}/contacts", params={"q": contact["last_name"]}, headers=other)
    ).json()
    assert found["data"] == []
    # Bulk operations on foreign ids skip them.
    r = await gw.post(
        f"{API}/contacts/bulk/tags", json={"ids": [contact["id"]], "tags": ["x"]}, headers=other
    )
    assert r.json() == {"updated": [], "skipped": [contact["id"]]}


async def test_rep_visibility_and_team_rules(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    marker = uuid.uuid4().hex[:8]
    a = await _contact(gw, crm, "sales_rep", last_name=f"Alpha{marker}")
    b = await _contact(gw, crm, "sales_rep2", last_name=f"Bravo{marker}")
    assert a["owner_id"] == crm.user_ids["sales_rep"]
    rep, rep2 = crm.auth("sales_rep"), crm.auth("sales_rep2")

    async def names(h: dict[str, str], **params: str) -> set[str]:
        r = await gw.get(f"{API}/contacts", params={"limit": "500", **params}, headers=h)
        assert r.status_code == 200, r.text
        return {c["last_name"] for c in r.json()["data"]}

    assert f"Alpha{marker}" in await names(rep, q=marker)
    assert f"Bravo{marker}" not in await names(rep, q=marker)
    assert f"Alpha{marker}" not in await names(rep2, q=marker)
    assert f"Bravo{marker}" not in await names(rep, last_name__contains=marker)
    _problem(await gw.get(f"{API}/contacts/{b['id']}", headers=rep), 404)
    _problem(await gw.patch(f"{API}/contacts/{b['id']}", json={"title": "x"}, headers=rep), 404)
    # A rep cannot give their record away.
    _problem(
        await gw.patch(
            f"{API}/contacts/{a['id']}", json={"owner_id": crm.user_ids["sales_rep2"]}, headers=rep
        ),
        403,
    )
    # Managers see both.
    assert {f"Alpha{marker}", f"Bravo{marker}"} <= await names(crm.auth("sales_manager"), q=marker)
    # A team with a read rule: the reps see each other's records but cannot edit them.
    team = await gw.post(
        f"{API}/teams",
        json={
            "name": f"Team {marker}",
            "member_ids": [crm.user_ids["sales_rep"], crm.user_ids["sales_rep2"]],
        },
        headers=crm.auth("owner"),
    )
    assert team.status_code == 201, team.text
    team_id = team.json()["id"]

    async def rule_set() -> httpx.Response | None:
        # The team reaches contacts' read model by event: 422 until it has.
        r = await gw.put(
            f"{API}/visibility-rules/{team_id}", json={"access": "read"}, headers=crm.auth("admin")
        )
        return r if r.status_code == 200 else None

    await eventually(rule_set)

    async def sees_b() -> bool:
        return f"Bravo{marker}" in await names(rep, q=marker)

    await eventually(sees_b)
    assert (await gw.get(f"{API}/contacts/{b['id']}", headers=rep)).status_code == 200
    _problem(await gw.patch(f"{API}/contacts/{b['id']}", json={"title": "x"}, headers=rep), 403)
    r = await gw.put(
        f"{API}/visibility-rules/{team_id}", json={"access": "edit"}, headers=crm.auth("admin")
    )
    assert (
        await gw.patch(f"{API}/contacts/{b['id']}", json={"title": "VP"}, headers=rep)
    ).status_code == 200
    assert (
        await gw.delete(f"{API}/visibility-rules/{team_id}", headers=crm.auth("owner"))
    ).status_code == 204
    _problem(await gw.get(f"{API}/contacts/{b['id']}", headers=rep), 404)
    # Bulk reassign by a manager is applied and audited; the rep then sees the record.
    r = await gw.post(
        f"{API}/contacts/bulk/reassign",
        json={"ids": [b["id"]], "owner_id": crm.user_ids["sales_rep"]},
        headers=crm.auth("sales_manager"),
    )
    assert r.json()["updated"] == [b["id"]]
    assert (await gw.get(f"{API}/contacts/{b['id']}", headers=rep)).status_code == 200


async def test_if_match_and_validation(platform_gateway: httpx.AsyncClient, crm: CrmTenant) -> None:
    gw = platform_gateway
    h = crm.auth("owner")
    c = await _contact(gw, crm, "owner")
    r = await gw.patch(
        f"{API}/contacts/{c['id']}", json={"title": "A"}, headers={**h, "If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.json()["version"] == 2 and r.headers["etag"] == '"2"'
    _problem(
        await gw.patch(
            f"{API}/contacts/{c['id']}", json={"title": "B"}, headers={**h, "If-Match": '"1"'}
        ),
        412,
    )
    _problem(
        await gw.patch(
            f"{API}/contacts/{c['id']}", json={"title": "B"}, headers={**h, "If-Match": "abc"}
        ),
        400,
    )
    assert (await gw.get(f"{API}/contacts/{c['id']}", headers=h)).json()["title"] == "A"
    for bad in (
        {"emails": [{"address": "not-an-email"}]},
        {"lifecycle_stage": "nope"},
        {"first_name": ""},
        {"first_name": "a\u0000b"},
        {"owner_id": str(uuid.uuid4())},
        {"company_id": str(uuid.uuid4())},
        {"custom_fields": {"unknown_field": 1}},
        {"unexpected": True},
        {"phones": [{"number": "++"}]},
        {"address": {"country": "Germany"}},
    ):
        r = await gw.post(f"{API}/contacts", json={"last_name": "Bad", **bad}, headers=h)
        assert 400 <= r.status_code < 500 and r.status_code != 409, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    _problem(await gw.get(f"{API}/contacts?sort=nonsense", headers=h), 422)
    _problem(await gw.get(f"{API}/contacts?cursor=garbage", headers=h), 400)
    _problem(await gw.get(f"{API}/contacts?limit=0", headers=h), 422)
    _problem(await gw.get(f"{API}/contacts?created_at__gte=yesterday", headers=h), 422)
    _problem(await gw.get(f"{API}/contacts?fields=id,password", headers=h), 422)


async def test_duplicates(platform_gateway: httpx.AsyncClient, crm: CrmTenant) -> None:
    gw = platform_gateway
    h = crm.auth("owner")
    email = f"dupe-{uuid.uuid4().hex[:8]}@example.com"
    first = await gw.post(
        f"{API}/contacts", json={"first_name": "Dee", "emails": [{"address": email}]}, headers=h
    )
    assert first.status_code == 201, first.text
    again = _problem(
        await gw.post(
            f"{API}/contacts",
            json={"first_name": "Dee", "emails": [{"address": email.upper()}]},
            headers=h,
        ),
        409,
    )
    assert again["duplicates"][0]["id"] == first.json()["id"]
    assert again["duplicates"][0]["reason"] == "same email"
    forced = await gw.post(
        f"{API}/contacts?allow_duplicate=true",
        json={"first_name": "Dee", "emails": [{"address": email}]},
        headers=h,
    )
    assert forced.status_code == 201
    company = (
        await gw.post(f"{API}/companies", json={"name": f"Dup {uuid.uuid4().hex[:6]}"}, headers=h)
    ).json()
    a = await gw.post(
        f"{API}/contacts",
        json={"first_name": "Jonathan", "last_name": "Smithers", "company_id": company["id"]},
        headers=h,
    )
    assert a.status_code == 201
    similar = _problem(
        await gw.post(
            f"{API}/contacts",
            json={"first_name": "Jonathon", "last_name": "Smithers", "company_id": company["id"]},
            headers=h,
        ),
        409,
    )
    assert similar["duplicates"][0]["reason"] == "similar name at the same company"


async def test_custom_fields_filters_sort_and_sensitive(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    admin = crm.auth("admin")
    tag = uuid.uuid4().hex[:6]
    defs = [
        {
            "entity": "contact",
            "key": f"score_{tag}",
            "label": "Score",
            "type": "number",
            "constraints": {"min": 0, "max": 100},
        },
        {
            "entity": "contact",
            "key": f"tier_{tag}",
            "label": "Tier",
            "type": "single_select",
            "options": ["gold", "silver"],
        },
        {"entity": "contact", "key": f"renewal_{tag}", "label": "Renewal", "type": "date"},
        {
            "entity": "contact",
            "key": f"langs_{tag}",
            "label": "Languages",
            "type": "multi_select",
            "options": ["en", "de", "fr"],
        },
        {
            "entity": "contact",
            "key": f"taxid_{tag}",
            "label": "Tax id",
            "type": "text",
            "sensitive": True,
        },
    ]
    for d in defs:
        r = await gw.post(f"{API}/custom-fields", json=d, headers=admin)
        assert r.status_code == 201, r.text
    _problem(await gw.post(f"{API}/custom-fields", json=defs[0], headers=admin), 409)
    score, tier, renewal, langs, taxid = (d["key"] for d in defs)
    made = []
    for i, (s, t, day, lang) in enumerate(
        [
            (10, "gold", "2027-01-05", ["en"]),
            (55, "silver", "2027-03-01", ["de", "en"]),
            (90, "gold", "2026-12-24", ["fr"]),
        ]
    ):
        c = await _contact(
            gw,
            crm,
            "owner",
            last_name=f"Cf{tag}{i}",
            custom_fields={
                score: s,
                tier: t,
                renewal: day,
                langs: lang,
                taxid: f"DE-{i}-123456789",
            },
        )
        made.append(c)
    assert made[1]["custom_fields"][langs] == ["en", "de"]
    assert made[0]["custom_fields"][taxid] == "DE-0-123456789"
    bad = await gw.post(
        f"{API}/contacts",
        json={"last_name": "X", "custom_fields": {score: 101, tier: "bronze"}},
        headers=admin,
    )
    errors = {e["field"] for e in _problem(bad, 422)["errors"]}
    assert errors == {f"custom_fields.{score}", f"custom_fields.{tier}"}
    h = crm.auth("owner")

    async def listed(**params: str) -> list[str]:
        r = await gw.get(
            f"{API}/contacts", params={"last_name__contains": f"Cf{tag}", **params}, headers=h
        )
        assert r.status_code == 200, r.text
        return [c["last_name"] for c in r.json()["data"]]

    assert await listed(**{f"cf.{score}__gte": "50"}) == [f"Cf{tag}2", f"Cf{tag}1"] or set(
        await listed(**{f"cf.{score}__gte": "50"})
    ) == {f"Cf{tag}1", f"Cf{tag}2"}
    assert await listed(sort=f"cf.{score}") == [f"Cf{tag}0", f"Cf{tag}1", f"Cf{tag}2"]
    assert await listed(sort=f"-cf.{renewal}") == [f"Cf{tag}1", f"Cf{tag}0", f"Cf{tag}2"]
    assert set(await listed(**{f"cf.{tier}": "gold"})) == {f"Cf{tag}0", f"Cf{tag}2"}
    assert set(await listed(**{f"cf.{langs}": "en"})) == {f"Cf{tag}0", f"Cf{tag}1"}
    assert set(await listed(**{f"cf.{renewal}__lt": "2027-01-01"})) == {f"Cf{tag}2"}
    _problem(await gw.get(f"{API}/contacts", params={f"cf.{taxid}": "x"}, headers=h), 422)
    _problem(await gw.get(f"{API}/contacts", params={f"cf.{score}__gte": "many"}, headers=h), 422)
    # Sensitive: masked for roles without access, encrypted at rest.
    viewer = (await gw.get(f"{API}/contacts/{made[0]['id']}", headers=crm.auth("viewer"))).json()
    assert (
        viewer["custom_fields"][taxid].startswith("••••")
        and "123456" not in viewer["custom_fields"][taxid]
    )
    # Pagination through a sorted, filtered list visits every row once.
    seen: list[str] = []
    cursor = None
    while True:
        params = {"last_name__contains": f"Cf{tag}", "sort": f"cf.{score}", "limit": "1"}
        if cursor:
            params["cursor"] = cursor
        page = (await gw.get(f"{API}/contacts", params=params, headers=h)).json()
        seen += [c["last_name"] for c in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"Cf{tag}0", f"Cf{tag}1", f"Cf{tag}2"]


async def test_search_is_typo_tolerant_and_ranked(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    h = crm.auth("owner")
    tag = uuid.uuid4().hex[:6]
    company = (
        await gw.post(f"{API}/companies", json={"name": f"Globex{tag} Corporation"}, headers=h)
    ).json()
    target = await _contact(
        gw,
        crm,
        "owner",
        first_name="Margaret",
        last_name=f"Hamilton{tag}",
        emails=[{"address": f"mhamilton{tag}@nasa.example"}],
        phones=[{"number": "+1 (555) 010-9988"}],
        company_id=company["id"],
    )

    async def hits(q: str) -> list[str]:
        r = await gw.get(f"{API}/contacts", params={"q": q}, headers=h)
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["data"]]

    for q in (
        f"hamilton{tag}",
        "Hamil",
        f"margaret hamilton{tag}",
        f"hamiltno{tag}",
        f"mhamilton{tag}@nasa.example",
        "5550109988",
        f"globex{tag}",
    ):
        assert target["id"] in await hits(q), q
    assert target["id"] not in await hits("qqqwwwzzz")


async def test_tags_bulk_rename_merge_delete(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    h = crm.auth("owner")
    tag = uuid.uuid4().hex[:6]
    c1 = await _contact(gw, crm, "owner", tags=[f"vip-{tag}"])
    c2 = await _contact(gw, crm, "owner")
    r = await gw.post(
        f"{API}/contacts/bulk/tags",
        json={"ids": [c1["id"], c2["id"]], "tags": [f"q4-{tag}"]},
        headers=h,
    )
    assert sorted(r.json()["updated"]) == sorted([c1["id"], c2["id"]])
    both = (await gw.get(f"{API}/contacts", params={"tag": f"q4-{tag}"}, headers=h)).json()["data"]
    assert {c["id"] for c in both} == {c1["id"], c2["id"]}
    only = (
        await gw.get(
            f"{API}/contacts", params=[("tag", f"q4-{tag}"), ("tag", f"vip-{tag}")], headers=h
        )
    ).json()["data"]
    assert [c["id"] for c in only] == [c1["id"]]
    tags = {t["name"]: t["id"] for t in (await gw.get(f"{API}/tags", headers=h)).json()}
    vip, q4 = tags[f"vip-{tag}"], tags[f"q4-{tag}"]
    _problem(await gw.post(f"{API}/tags/{vip}/merge", json={"into_id": vip}, headers=h), 422)
    _problem(await gw.patch(f"{API}/tags/{vip}", json={"name": f"Q4-{tag}"}, headers=h), 409)
    r = await gw.post(f"{API}/tags/{vip}/merge", json={"into_id": q4}, headers=h)
    assert r.status_code == 200 and r.json()["contacts"] == 2
    got = (await gw.get(f"{API}/contacts/{c1['id']}", headers=h)).json()
    assert [t["name"] for t in got["tags"]] == [f"q4-{tag}"]
    assert (
        await gw.patch(f"{API}/tags/{q4}", json={"name": f"Renamed-{tag}"}, headers=h)
    ).status_code == 200
    got = (await gw.get(f"{API}/contacts/{c1['id']}", headers=h)).json()
    assert [t["name"] for t in got["tags"]] == [f"Renamed-{tag}"]
    assert (await gw.delete(f"{API}/tags/{q4}", headers=h)).status_code == 204
    assert (await gw.get(f"{API}/contacts/{c1['id']}", headers=h)).json()["tags"] == []
    _problem(await gw.delete(f"{API}/tags/{q4}", headers=crm.auth("sales_rep")), 403)


async def test_company_links_and_events(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, platform: object
) -> None:
    gw = platform_gateway
    h = crm.auth("owner")
    acme = (
        await gw.post(
            f"{API}/companies",
            json={
                "name": f"Acme {uuid.uuid4().hex[:6]}",
                "domain": f"acme-{uuid.uuid4().hex[:6]}.example",
            },
            headers=h,
        )
    ).json()
    other = (
        await gw.post(f"{API}/companies", json={"name": f"Other {uuid.uuid4().hex[:6]}"}, headers=h)
    ).json()
    _problem(
        await gw.post(
            f"{API}/companies", json={"name": "Again", "domain": acme["domain"]}, headers=h
        ),
        409,
    )
    c = await _contact(gw, crm, "owner", company_id=acme["id"])
    r = await gw.put(
        f"{API}/contacts/{c['id']}/companies/{other['id']}", json={"role": "Advisor"}, headers=h
    )
    assert r.status_code == 200, r.text
    links = {link["company_id"]: link for link in r.json()}
    assert links[acme["id"]]["primary"] and links[other["id"]]["role"] == "Advisor"
    r = await gw.put(
        f"{API}/contacts/{c['id']}/companies/{other['id']}",
        json={"role": "Advisor", "primary": True},
        headers=h,
    )
    assert (await gw.get(f"{API}/contacts/{c['id']}", headers=h)).json()["company_id"] == other[
        "id"
    ]
    at_acme = (await gw.get(f"{API}/companies/{acme['id']}/contacts", headers=h)).json()["data"]
    assert c["id"] not in {x["id"] for x in at_acme}
    assert (
        await gw.delete(f"{API}/contacts/{c['id']}/companies/{other['id']}", headers=h)
    ).status_code == 204
    assert (await gw.get(f"{API}/contacts/{c['id']}", headers=h)).json()["company_id"] is None


async def test_make_tenant_smoke(
    platform_gateway: httpx.AsyncClient, smtp_server: SmtpSink
) -> None:
    t = await make_tenant(platform_gateway, smtp_server, roles=("owner",))
    r = await platform_gateway.get(f"{API}/contacts", headers=t.auth("owner"))
    assert r.json() == {"data": [], "next_cursor": None}
