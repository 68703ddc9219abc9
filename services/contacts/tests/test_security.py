"""Issue 10 (security): what a caller may not read or see, it learns nothing about.

* A sensitive custom field a role cannot read is no oracle: writes to it are refused
  (API, batch, imports, dry runs included), so no answer depends on its stored value;
  masked values show no characters; filters and sorts on it are refused.
* A rep learns no id or name of a record they cannot see: duplicate answers, batch,
  upsert and import row messages, company links and tag usage counts.
* Export filters are checked up front; batch items never echo database text.
* A visibility rule needs a team the tenant has.
"""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import text

from crm_dev.testing import RunningPlatform, SmtpSink, eventually
from crm_dev.testing_logs import remember_secret
from services.contacts.tests.conftest import CrmTenant, make_tenant

API = "/api/v1"
SECRET = remember_secret("Passport-X7731942")  # a sensitive value: never in a log


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def sec(platform_gateway: httpx.AsyncClient, smtp_server: SmtpSink) -> CrmTenant:
    """A tenant of its own: its sensitive field cannot disturb other tests."""
    tenant = await make_tenant(
        platform_gateway,
        smtp_server,
        roles=("owner", "admin", "sales_manager", "sales_rep", "marketer", "viewer"),
    )
    r = await platform_gateway.post(
        f"{API}/custom-fields",
        json={
            "entity": "contact",
            "key": "passport",
            "label": "Passport",
            "type": "text",
            "sensitive": True,
        },
        headers=tenant.auth("admin"),
    )
    assert r.status_code == 201, r.text
    return tenant


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    return r.json()


async def _contact(gw: httpx.AsyncClient, t: CrmTenant, who: str, **body: Any) -> dict[str, Any]:
    r = await gw.post(f"{API}/contacts?allow_duplicate=true", json=body, headers=t.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


async def _import(
    gw: httpx.AsyncClient, t: CrmTenant, who: str, body: bytes, **run: Any
) -> httpx.Response:
    up = await gw.post(
        f"{API}/imports",
        content=body,
        params={"filename": "x.csv"},
        headers={**t.auth(who), "Content-Type": "text/csv"},
    )
    assert up.status_code == 201, up.text
    return await gw.post(f"{API}/imports/{up.json()['id']}/run", json=run, headers=t.auth(who))


async def _finished(gw: httpx.AsyncClient, t: CrmTenant, who: str, job_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await gw.get(f"{API}/imports/{job_id}", headers=t.auth(who))
        assert r.status_code == 200, r.text
        done = r.json()["status"] in ("validated", "completed", "failed")
        return r.json() if done else None

    return await eventually(probe, timeout=60, interval=0.2)


async def _errors(gw: httpx.AsyncClient, t: CrmTenant, who: str, job_id: str) -> str:
    r = await gw.get(f"{API}/imports/{job_id}/errors?format=json", headers=t.auth(who))
    assert r.status_code == 200, r.text
    return r.text


# --------------------------------------------------------------------------- sensitive oracle


async def test_sensitive_field_is_no_oracle(
    platform_gateway: httpx.AsyncClient, sec: CrmTenant
) -> None:
    gw, tag = platform_gateway, _tag()
    email = f"holder-{tag}@example.com"
    person = await _contact(
        gw,
        sec,
        "admin",
        first_name="Holder",
        last_name=tag,
        emails=[{"address": email}],
        custom_fields={"passport": SECRET},
    )
    pid = person["id"]
    marketer = sec.auth("marketer")

    # The oracle of the issue: an update-mode dry run guessing the stored value. The
    # marketer may write records but not read the field: the run is refused up front,
    # whatever the guess, so its answer cannot depend on the value.
    header = ["Email", "Passport"]
    for guess in (SECRET, "wrong-guess"):
        r = await _import(
            gw,
            sec,
            "marketer",
            _csv(header, [[email, guess]]),
            mapping={"Email": "email", "Passport": "cf.passport"},
            mode="update",
            match_on="email",
            dry_run=True,
        )
        problem = _problem(r, 403)
        assert problem["errors"][0]["field"] == "mapping.Passport", problem
    # The suggested mapping leaves the unreadable field out (the default mapping then
    # runs, without it).
    up = await gw.post(
        f"{API}/imports",
        content=_csv(header, [[email, SECRET]]),
        params={"filename": "x.csv"},
        headers={**marketer, "Content-Type": "text/csv"},
    )
    assert up.status_code == 201, up.text
    assert up.json()["suggested_mapping"].get("Passport") is None, up.json()
    # A reader (admin) may compare: the dry run says unchanged for the same value.
    r = await _import(
        gw,
        sec,
        "admin",
        _csv(header, [[email, SECRET]]),
        mapping={"Email": "email", "Passport": "cf.passport"},
        mode="update",
        match_on="email",
        dry_run=True,
    )
    assert r.status_code == 202, r.text
    job = await _finished(gw, sec, "admin", r.json()["id"])
    assert job["counts"]["unchanged"] == 1, job

    # PATCH: a write to the unreadable field is refused, the same value or not, and so
    # is clearing it (which would tell whether it held a value).
    for value in (SECRET, "wrong-guess", None):
        r = await gw.patch(
            f"{API}/contacts/{pid}", json={"custom_fields": {"passport": value}}, headers=marketer
        )
        problem = _problem(r, 403)
        assert problem["errors"] == [
            {"field": "custom_fields.passport", "message": problem["errors"][0]["message"]}
        ]
    # Create, batch create/update/upsert: the same refusal, per item.
    _problem(
        await gw.post(
            f"{API}/contacts?allow_duplicate=true",
            json={"first_name": "New", "custom_fields": {"passport": "A1"}},
            headers=marketer,
        ),
        403,
    )
    for path, body in (
        (
            "batch/update",
            {"items": [{"id": pid, "changes": {"custom_fields": {"passport": SECRET}}}]},
        ),
        (
            "batch/upsert",
            {
                "key": "email",
                "items": [{"emails": [{"address": email}], "custom_fields": {"passport": SECRET}}],
            },
        ),
        ("batch/create", {"items": [{"first_name": "B", "custom_fields": {"passport": SECRET}}]}),
    ):
        r = await gw.post(f"{API}/contacts/{path}", json=body, headers=marketer)
        assert r.status_code == 200, r.text
        result = r.json()["results"][0]
        assert (result["status"], result["action"]) == (403, "failed"), (path, result)
    after = (await gw.get(f"{API}/contacts/{pid}", headers=sec.auth("admin"))).json()
    assert after["version"] == person["version"] and after["custom_fields"]["passport"] == SECRET

    # Masked values show nothing of the value (not even its last characters).
    for who in ("marketer", "viewer", "sales_manager"):
        got = (await gw.get(f"{API}/contacts/{pid}", headers=sec.auth(who))).json()
        assert got["custom_fields"]["passport"] == "••••", (who, got["custom_fields"])
    # Filters and sorts on a sensitive field are refused for every role.
    for params in (
        {"cf.passport": SECRET},
        {"cf.passport__exists": "true"},
        {"cf.passport__contains": "X77"},
        {"sort": "cf.passport"},
    ):
        _problem(await gw.get(f"{API}/contacts", params=params, headers=marketer), 422)
    # Search does not look into custom fields.
    r = await gw.get(f"{API}/contacts", params={"q": SECRET}, headers=marketer)
    assert r.json()["data"] == []

    # Merge preview and merge by a role that cannot read the field: masked everywhere,
    # and the result does not say whether the two values were equal.
    other = await _contact(
        gw,
        sec,
        "admin",
        first_name="Holder",
        last_name=tag,
        custom_fields={"passport": SECRET},
    )
    body = {"winner_id": pid, "loser_ids": [other["id"]]}
    manager = sec.auth("sales_manager")
    r = await gw.post(f"{API}/contacts/merge/preview", json=body, headers=manager)
    assert r.status_code == 200, r.text
    assert SECRET not in r.text
    shown = next(f for f in r.json()["fields"] if f["field"] == "custom_fields.passport")
    assert {c["value"] for c in shown["candidates"]} == {"••••"} and shown["value"] == "••••"
    r = await gw.post(f"{API}/contacts/merge", json=body, headers=manager)
    assert r.status_code == 201, r.text
    assert SECRET not in r.text
    assert r.json()["result"]["custom_fields"]["passport"] == "••••"

    # A reader's write of the very same value changes nothing: the version stays.
    before = (await gw.get(f"{API}/contacts/{pid}", headers=sec.auth("admin"))).json()
    r = await gw.patch(
        f"{API}/contacts/{pid}",
        json={"custom_fields": {"passport": SECRET}},
        headers=sec.auth("admin"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == before["version"]


# --------------------------------------------------------------------------- invisible records


async def test_rep_learns_nothing_of_records_they_cannot_see(
    platform_gateway: httpx.AsyncClient, sec: CrmTenant
) -> None:
    gw, tag = platform_gateway, _tag()
    rep = sec.auth("sales_rep")
    admin = sec.auth("admin")
    rep2_id = sec.user_ids["sales_rep2"]
    hidden_co = await gw.post(
        f"{API}/companies",
        json={
            "name": f"Hidden Co {tag}",
            "domain": f"hidden-{tag}.example.com",
            "owner_id": rep2_id,
        },
        headers=admin,
    )
    assert hidden_co.status_code == 201, hidden_co.text
    co = hidden_co.json()
    email, phone, ext = f"hid-{tag}@example.com", f"+49 30 {int(tag, 16) % 10**7:07d}", f"X-{tag}"
    hidden = await _contact(
        gw,
        sec,
        "admin",
        first_name="Hidden",
        last_name=f"Person{tag}",
        emails=[{"address": email}],
        phones=[{"number": phone}],
        external_id=ext,
        owner_id=rep2_id,
        tags=[f"secret-{tag}"],
    )
    hid = hidden["id"]
    assert (await gw.get(f"{API}/contacts/{hid}", headers=rep)).status_code == 404

    def blind(payload: str) -> None:
        for leak in (hid, co["id"], f"Person{tag}", f"Hidden Co {tag}"):
            assert leak not in payload, (leak, payload)

    # Duplicates: 409 without id or name; the rep may still create with allow_duplicate.
    for body in (
        {"first_name": "Mine", "emails": [{"address": email}]},
        {"first_name": "Mine", "phones": [{"number": phone}]},
    ):
        r = await gw.post(f"{API}/contacts", json=body, headers=rep)
        problem = _problem(r, 409)
        blind(r.text)
        assert "cannot see" in problem["detail"], problem
        assert problem["duplicates"] == [{"id": None, "reason": problem["duplicates"][0]["reason"]}]
    r = await gw.post(
        f"{API}/contacts", json={"first_name": "Mine", "external_id": ext}, headers=rep
    )
    _problem(r, 409)
    blind(r.text)
    r = await gw.post(
        f"{API}/companies",
        json={"name": "Mine", "domain": f"hidden-{tag}.example.com"},
        headers=rep,
    )
    _problem(r, 409)
    blind(r.text)
    # Batch create and upsert: per-item problems without the id; the upsert leaves the
    # hidden record alone.
    r = await gw.post(
        f"{API}/contacts/batch/create",
        json={"items": [{"first_name": "B", "emails": [{"address": email}]}]},
        headers=rep,
    )
    assert r.json()["results"][0]["status"] == 409, r.text
    blind(r.text)
    r = await gw.post(
        f"{API}/contacts/batch/upsert",
        json={"key": "email", "items": [{"emails": [{"address": email}], "title": "Rep was here"}]},
        headers=rep,
    )
    assert r.json()["results"][0]["status"] == 409, r.text
    blind(r.text)
    r = await gw.post(
        f"{API}/contacts/batch/upsert",
        json={"key": "external_id", "items": [{"external_id": ext, "title": "Rep was here"}]},
        headers=rep,
    )
    assert r.json()["results"][0]["status"] == 409, r.text
    blind(r.text)
    got = (await gw.get(f"{API}/contacts/{hid}", headers=admin)).json()
    assert got["title"] is None and got["version"] == hidden["version"]

    # Import row messages (create mode: duplicate email, external id).
    r = await _import(
        gw,
        sec,
        "sales_rep",
        _csv(["First", "Email", "Ext"], [["A", email, ""], ["B", "", ext]]),
        mapping={"First": "first_name", "Email": "email", "Ext": "external_id"},
        dry_run=True,
    )
    assert r.status_code == 202, r.text
    job = await _finished(gw, sec, "sales_rep", r.json()["id"])
    assert job["counts"]["failed"] == 2, job
    blind(await _errors(gw, sec, "sales_rep", job["id"]))

    # Companies: a contact cannot be linked to (or created at) an invisible company.
    mine = await _contact(gw, sec, "sales_rep", first_name="Mine", last_name=tag)
    r = await gw.put(f"{API}/contacts/{mine['id']}/companies/{co['id']}", json={}, headers=rep)
    assert r.status_code == 422 and f"Hidden Co {tag}" not in r.text, r.text
    r = await gw.post(
        f"{API}/contacts?allow_duplicate=true",
        json={"first_name": "At", "company_id": co["id"]},
        headers=rep,
    )
    _problem(r, 422)
    r = await gw.patch(f"{API}/contacts/{mine['id']}", json={"company_id": co["id"]}, headers=rep)
    _problem(r, 422)
    # Linked by an admin: the rep's list of links does not name the hidden company.
    r = await gw.put(f"{API}/contacts/{mine['id']}/companies/{co['id']}", json={}, headers=admin)
    assert r.status_code == 200, r.text
    r = await gw.get(f"{API}/contacts/{mine['id']}/companies", headers=rep)
    assert r.status_code == 200, r.text
    blind(r.text)

    # Tag usage counts only what the caller sees.
    tags = (await gw.get(f"{API}/tags", headers=rep)).json()
    listed = tags["data"] if isinstance(tags, dict) else tags
    tag_id = next(t["id"] for t in listed if t["name"] == f"secret-{tag}")
    usage = (await gw.get(f"{API}/tags/{tag_id}", headers=rep)).json()
    assert usage["contacts"] == 0, usage
    usage = (await gw.get(f"{API}/tags/{tag_id}", headers=admin)).json()
    assert usage["contacts"] == 1, usage


# --------------------------------------------------------------------------- exports, batch text


async def test_export_filters_are_checked_up_front(
    platform_gateway: httpx.AsyncClient, sec: CrmTenant
) -> None:
    gw = platform_gateway
    for query in (
        "no_such_field=1",
        "cf.nope=1",
        "created_after=yesterday",
        {"cf.passport": "x"},
        "sort=-nothing",
    ):
        r = await gw.post(
            f"{API}/exports",
            json={"entity": "contacts", "format": "csv", "query": query},
            headers=sec.auth("sales_manager"),
        )
        problem = _problem(r, 422)
        assert problem["errors"], problem


async def test_batch_items_never_echo_database_text(
    platform: RunningPlatform, platform_gateway: httpx.AsyncClient, sec: CrmTenant
) -> None:
    gw, tag = platform_gateway, _tag()
    marker = f"Trig{tag}"
    async with platform.runtime("contacts").db.tenant_session(sec.tenant_id) as session:
        await session.execute(
            text(
                f"CREATE FUNCTION refuse_{tag}() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN IF NEW.last_name = '" + marker + "' THEN"
                " RAISE EXCEPTION USING ERRCODE = '22023',"
                " MESSAGE = 'refused value ' || coalesce(NEW.email, '?'); END IF;"
                " RETURN NEW; END $$"
            )
        )
        await session.execute(
            text(
                f"CREATE TRIGGER refuse_{tag} BEFORE INSERT ON contacts"
                f" FOR EACH ROW EXECUTE FUNCTION refuse_{tag}()"
            )
        )
    try:
        email = f"private-{tag}@example.com"
        r = await gw.post(
            f"{API}/contacts/batch/create",
            json={
                "items": [
                    {"last_name": marker, "emails": [{"address": email}]},
                    {"last_name": f"Fine{tag}"},
                ],
                "allow_duplicates": True,
            },
            headers=sec.auth("admin"),
        )
        assert r.status_code == 200, r.text
        first, second = r.json()["results"]
        assert first["status"] == 422 and first["action"] == "failed", first
        assert second["status"] == 201, second
        problem = first["problem"]
        assert problem["title"] and problem["type"], problem
        assert email not in r.text and "refused value" not in r.text, r.text
    finally:
        async with platform.runtime("contacts").db.tenant_session(sec.tenant_id) as session:
            await session.execute(text(f"DROP TRIGGER refuse_{tag} ON contacts"))
            await session.execute(text(f"DROP FUNCTION refuse_{tag}()"))


# --------------------------------------------------------------------------- visibility rules


async def test_visibility_rule_needs_a_team_of_the_tenant(
    platform_gateway: httpx.AsyncClient, sec: CrmTenant, other_crm: CrmTenant
) -> None:
    gw = platform_gateway
    admin = sec.auth("admin")
    problem = _problem(
        await gw.put(
            f"{API}/visibility-rules/{uuid.uuid4()}", json={"access": "read"}, headers=admin
        ),
        422,
    )
    assert problem["errors"][0]["field"] == "team_id", problem
    # Another tenant's team is no team of this tenant.
    theirs = await gw.post(
        f"{API}/teams", json={"name": f"Theirs {_tag()}"}, headers=other_crm.auth("owner")
    )
    assert theirs.status_code == 201, theirs.text
    ours = await gw.post(
        f"{API}/teams",
        json={"name": f"Ours {_tag()}", "member_ids": [sec.user_ids["sales_rep"]]},
        headers=sec.auth("owner"),
    )
    assert ours.status_code == 201, ours.text

    async def rule_set() -> httpx.Response | None:
        r = await gw.put(
            f"{API}/visibility-rules/{ours.json()['id']}", json={"access": "read"}, headers=admin
        )
        return r if r.status_code == 200 else None

    await eventually(rule_set)
    _problem(
        await gw.put(
            f"{API}/visibility-rules/{theirs.json()['id']}", json={"access": "read"}, headers=admin
        ),
        422,
    )
    # An empty team (no members yet) is a team too.
    empty = await gw.post(
        f"{API}/teams", json={"name": f"Empty {_tag()}"}, headers=sec.auth("owner")
    )
    assert empty.status_code == 201, empty.text

    async def empty_rule() -> httpx.Response | None:
        r = await gw.put(
            f"{API}/visibility-rules/{empty.json()['id']}", json={"access": "edit"}, headers=admin
        )
        return r if r.status_code == 200 else None

    await eventually(empty_rule)


async def test_import_jobs_are_listed_per_creating_principal(
    platform_gateway: httpx.AsyncClient, sec: CrmTenant
) -> None:
    """API keys have no user id: listing by user id once showed every key's jobs to each."""
    gw = platform_gateway
    keys = []
    for name in ("etl-a", "etl-b"):
        r = await gw.post(
            f"{API}/api-keys",
            json={"name": name, "scopes": ["contacts:write"]},
            headers=sec.auth("owner"),
        )
        assert r.status_code == 201, r.text
        keys.append({"Authorization": f"Bearer {r.json()['key']}"})
    up = await gw.post(
        f"{API}/imports",
        content=_csv(["first_name"], [["Ada"]]),
        params={"filename": "a.csv"},
        headers={**keys[0], "Content-Type": "text/csv"},
    )
    assert up.status_code == 201, up.text
    mine = await gw.get(f"{API}/imports", headers=keys[0])
    assert [j["id"] for j in mine.json()["data"]] == [up.json()["id"]]
    theirs = await gw.get(f"{API}/imports", headers=keys[1])
    assert theirs.status_code == 200 and theirs.json()["data"] == []
    assert (await gw.get(f"{API}/imports/{up.json()['id']}", headers=keys[1])).status_code == 404
    # reading jobs needs no write right: a viewer lists their own (none)
    viewer = await gw.get(f"{API}/imports", headers=sec.auth("viewer"))
    assert viewer.status_code == 200 and viewer.json()["data"] == []
    owner = await gw.get(f"{API}/imports", headers=sec.auth("owner"))
    assert up.json()["id"] in {j["id"] for j in owner.json()["data"]}
