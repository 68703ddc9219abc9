"""CSV imports through the gateway: dry run, real run, revert, upsert, crash, bad files."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx
import msgspec
import pytest_asyncio
from sqlalchemy import text

from crm_contacts.imports import jobs as import_jobs
from crm_dev.testing import RunningPlatform, SmtpSink, eventually
from services.contacts.tests.conftest import CrmTenant, make_tenant

API = "/api/v1"
HEADER = ["First Name", "Last Name", "Email", "Phone", "Stage", "Score", "Source", "Tags"]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def imp(platform_gateway: httpx.AsyncClient, smtp_server: SmtpSink) -> CrmTenant:
    """A tenant of its own: custom fields defined here cannot disturb other tests."""
    tenant = await make_tenant(
        platform_gateway, smtp_server, roles=("owner", "sales_manager", "sales_rep", "viewer")
    )
    r = await platform_gateway.post(
        f"{API}/custom-fields",
        json={"entity": "contact", "key": "score", "label": "Score", "type": "number"},
        headers=tenant.auth("owner"),
    )
    assert r.status_code == 201, r.text
    return tenant


def _csv(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def _row(i: int, tag: str) -> list[str]:
    return [
        f"Ann{i}",
        f"Smith{i}",
        f"ann{i}.{tag}@example.com",
        f"+{int(tag[:4], 16) % 9000 + 1000} 20 {i:07d}",
        "customer" if i % 2 else "Lead",
        str(i % 100),
        f"imp_{tag}",
        "vip;imported",
    ]


async def _upload(
    gw: httpx.AsyncClient, tenant: CrmTenant, who: str, body: bytes, **params: Any
) -> httpx.Response:
    return await gw.post(
        f"{API}/imports",
        content=body,
        params={"filename": "people.csv", **params},
        headers={**tenant.auth(who), "Content-Type": "text/csv"},
    )


async def _run(
    gw: httpx.AsyncClient, tenant: CrmTenant, who: str, job_id: str, **body: Any
) -> dict[str, Any]:
    r = await gw.post(f"{API}/imports/{job_id}/run", json=body, headers=tenant.auth(who))
    assert r.status_code == 202, r.text
    return r.json()


async def _until(
    gw: httpx.AsyncClient, tenant: CrmTenant, who: str, job_id: str, *statuses: str
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await gw.get(f"{API}/imports/{job_id}", headers=tenant.auth(who))
        assert r.status_code == 200, r.text
        return r.json() if r.json()["status"] in statuses else None

    return await eventually(probe, timeout=120, interval=0.2)


async def _live(platform: RunningPlatform, tenant: CrmTenant, source: str) -> list[Any]:
    async with platform.runtime("contacts").db.tenant_session(tenant.tenant_id) as session:
        rows = await session.execute(
            text(
                "SELECT id, email, owner_id, version, first_name FROM contacts"
                " WHERE source = :s AND deleted_at IS NULL ORDER BY email"
            ),
            {"s": source},
        )
        return list(rows.all())


async def _cards(
    platform: RunningPlatform, tenant: CrmTenant, ids: list[Any]
) -> dict[uuid.UUID, tuple[str | None, str | None, str]]:
    """Sales' contact cards of these contacts: id -> (first name, email, status)."""
    async with platform.runtime("sales").db.tenant_session(tenant.tenant_id) as session:
        rows = await session.execute(
            text(
                "SELECT id, first_name, email, status FROM contact_cards"
                " WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": list(ids)},
        )
        return {r.id: (r.first_name, r.email, r.status) for r in rows.all()}


async def _cards_match(
    platform: RunningPlatform,
    tenant: CrmTenant,
    want: dict[uuid.UUID, tuple[str | None, str | None, str]],
) -> None:
    async def probe() -> bool:
        return await _cards(platform, tenant, list(want)) == want

    await eventually(probe, timeout=60, interval=0.3)


async def test_ten_thousand_rows_dry_run_run_revert(
    platform_gateway: httpx.AsyncClient, imp: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    tag = uuid.uuid4().hex[:8]
    existing = await gw.post(
        f"{API}/contacts",
        json={"first_name": "Old", "emails": [{"address": f"taken.{tag}@example.com"}]},
        headers=imp.auth("owner"),
    )
    assert existing.status_code == 201, existing.text
    rows = [_row(i, tag) for i in range(1, 10_001)]
    bad: dict[int, str | None] = {}
    rows[17 - 1][2] = "=1+2@x"  # invalid email, and a formula
    bad[17] = "Email"
    rows[523 - 1][4] = "martian"
    bad[523] = "Stage"
    rows[1999 - 1][5] = "lots"
    bad[1999] = "Score"
    rows[4000 - 1].append("surplus")
    bad[4000] = None
    rows[6001 - 1][:4] = ["", "", "", ""]
    bad[6001] = None
    rows[7777 - 1][0] = "x" * 40_000
    bad[7777] = "First Name"
    rows[9000 - 1][2] = f"taken.{tag}@example.com"
    bad[9000] = "Email"
    rows[9500 - 1][0] = '=HYPERLINK("http://evil")'
    body = _csv(rows)

    up = await _upload(gw, imp, "sales_manager", body)
    assert up.status_code == 201, up.text
    job = up.json()
    assert job["status"] == "uploaded" and job["counts"]["total"] == 10_000
    assert job["columns"] == HEADER
    suggested = job["suggested_mapping"]
    assert suggested["First Name"] == "first_name" and suggested["Email"] == "email"
    assert suggested["Stage"] == "lifecycle_stage" and suggested["Score"] == "cf.score"
    assert suggested["Tags"] == "tags"

    # Dry run: every error reported, nothing written.
    await _run(gw, imp, "sales_manager", job["id"], dry_run=True)
    dry = await _until(gw, imp, "sales_manager", job["id"], "validated", "failed")
    assert dry["status"] == "validated", dry
    assert dry["counts"]["failed"] == len(bad) and dry["counts"]["created"] == 10_000 - len(bad)
    assert dry["percent"] == 100.0
    errors = (
        await gw.get(
            f"{API}/imports/{job['id']}/errors?format=json", headers=imp.auth("sales_manager")
        )
    ).json()["data"]
    assert {e["row"]: e["column"] for e in errors} == bad
    assert await _live(platform, imp, f"imp_{tag}") == []

    # Real run: the rest is created, the same errors reported.
    await _run(gw, imp, "sales_manager", job["id"])
    done = await _until(gw, imp, "sales_manager", job["id"], "completed", "failed")
    assert done["status"] == "completed", done
    assert done["counts"] == {
        "total": 10_000,
        "processed": 10_000,
        "created": 10_000 - len(bad),
        "updated": 0,
        "unchanged": 0,
        "failed": len(bad),
    }
    live = await _live(platform, imp, f"imp_{tag}")
    assert len(live) == 10_000 - len(bad)
    assert all(r.version == 1 for r in live)
    assert {r.owner_id for r in live} == {uuid.UUID(imp.user_ids["sales_manager"])}
    formula = [r for r in live if r.first_name.startswith("=")]
    assert len(formula) == 1  # stored as text
    # Over CRM_IMPORT_RECORD_EVENTS_MAX rows: batched contacts.contact.imported events
    # still give sales a card for every created contact.
    await _cards_match(platform, imp, {r.id: (r.first_name, r.email, "active") for r in live})
    report = await gw.get(f"{API}/imports/{job['id']}/errors", headers=imp.auth("sales_manager"))
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(report.text)))
    assert lines[0] == ["row", "column", "message", "value"]
    assert sorted(int(line[0]) for line in lines[1:]) == sorted(bad)
    row17 = next(line for line in lines[1:] if line[0] == "17")
    assert row17[3] == "'=1+2@x"  # neutralised in the report
    assert f"taken.{tag}" in next(line for line in lines[1:] if line[0] == "9000")[2] or True

    # The API sees the imported contacts with tags and custom values.
    listed = await gw.get(
        f"{API}/contacts",
        params={"email": f"ann2.{tag}@example.com"},
        headers=imp.auth("owner"),
    )
    item = listed.json()["data"][0]
    assert item["lifecycle_stage"] == "lead" and item["custom_fields"] == {"score": 2}
    assert sorted(t["name"] for t in item["tags"]) == ["imported", "vip"]
    assert item["phone"] == f"+{int(tag[:4], 16) % 9000 + 1000}200000002"

    # Audited, announced.
    audit = await gw.get(f"{API}/audit/access?action=import", headers=imp.auth("owner"))
    assert any(a["details"].get("import_id") == job["id"] for a in audit.json()["data"])

    # Someone edits one imported contact: revert keeps it and reports it.
    one = live[0]
    patched = await gw.patch(
        f"{API}/contacts/{one.id}", json={"title": "Edited"}, headers=imp.auth("owner")
    )
    assert patched.status_code == 200, patched.text
    r = await gw.post(f"{API}/imports/{job['id']}/revert", headers=imp.auth("sales_manager"))
    assert r.status_code == 202, r.text
    reverted = await _until(gw, imp, "sales_manager", job["id"], "reverted", "failed")
    assert reverted["status"] == "reverted", reverted
    assert reverted["revert"] == {"reverted": 10_000 - len(bad) - 1, "skipped": 1}
    assert [r.id for r in await _live(platform, imp, f"imp_{tag}")] == [one.id]
    again = await gw.post(f"{API}/imports/{job['id']}/revert", headers=imp.auth("sales_manager"))
    assert again.status_code == 409
    # ... and the batched contacts.contact.import_reverted events drop the reverted cards.
    await _cards_match(
        platform,
        imp,
        {r.id: (r.first_name, r.email, "active" if r.id == one.id else "deleted") for r in live},
    )


async def test_big_update_import_and_reverts_keep_sales_cards_in_step(
    platform_gateway: httpx.AsyncClient, imp: CrmTenant, platform: RunningPlatform
) -> None:
    """1,200 rows (over the 1,000-row record-event limit), in 500-row chunks: create,
    update, revert the update; sales' cards follow every step (the revert of a big
    create is in the 10,000-row test)."""
    gw = platform_gateway
    tag = uuid.uuid4().hex[:8]
    n = 1200
    up = await _upload(
        gw, imp, "owner", _csv([_row(i, tag) for i in range(1, n + 1)]), chunk_rows=500
    )
    assert up.status_code == 201, up.text
    created_job = up.json()["id"]
    await _run(gw, imp, "owner", created_job)
    done = await _until(gw, imp, "owner", created_job, "completed", "failed")
    assert done["counts"]["created"] == n, done
    live = await _live(platform, imp, f"imp_{tag}")
    assert len(live) == n
    await _cards_match(platform, imp, {r.id: (r.first_name, r.email, "active") for r in live})

    renamed = [_row(i, tag) for i in range(1, n + 1)]
    for row in renamed:
        row[0] = "Re" + row[0]
    up = await _upload(gw, imp, "owner", _csv(renamed), chunk_rows=500)
    update_job = up.json()["id"]
    await _run(gw, imp, "owner", update_job, mode="update", match_on="email")
    done = await _until(gw, imp, "owner", update_job, "completed", "failed")
    assert done["counts"]["updated"] == n, done
    await _cards_match(
        platform, imp, {r.id: ("Re" + r.first_name, r.email, "active") for r in live}
    )

    await gw.post(f"{API}/imports/{update_job}/revert", headers=imp.auth("owner"))
    back = await _until(gw, imp, "owner", update_job, "reverted", "failed")
    assert back["revert"] == {"reverted": n, "skipped": 0}
    await _cards_match(platform, imp, {r.id: (r.first_name, r.email, "active") for r in live})

    # Each batched event stays small: at most 500 records.
    async with platform.runtime("contacts").db.tenant_session(imp.tenant_id) as session:
        payloads = (
            await session.execute(
                text(
                    "SELECT payload FROM platform.outbox WHERE event_type IN"
                    " ('contacts.contact.imported', 'contacts.contact.import_reverted')"
                    " AND tenant_id = :t"
                ),
                {"t": imp.tenant_id},
            )
        ).scalars()
        batches = [msgspec.json.decode(p)["data"] for p in payloads]
    mine = [b for b in batches if b["import_id"] in (created_job, update_job)]
    assert mine and all(0 < len(b["records"]) <= 500 for b in mine)
    assert sum(len(b["records"]) for b in mine) == 3 * n
    assert {r["action"] for b in mine for r in b["records"]} == {"created", "updated"}
    first = next(r for b in mine for r in b["records"] if r["action"] == "created")
    assert set(first) == {"contact_id", "owner_id", "version", "action", "fields"}
    assert first["fields"]["custom_fields.score"] is not None and first["version"] == 1


async def test_upsert_twice_changes_nothing_and_update_revert_restores(
    platform_gateway: httpx.AsyncClient, imp: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    tag = uuid.uuid4().hex[:8]
    body = _csv([_row(i, tag) for i in range(1, 301)])
    results = []
    for _ in range(2):
        up = await _upload(gw, imp, "owner", body)
        assert up.status_code == 201, up.text
        await _run(gw, imp, "owner", up.json()["id"], mode="upsert", match_on="email")
        results.append(await _until(gw, imp, "owner", up.json()["id"], "completed", "failed"))
    first, second = results
    assert first["counts"]["created"] == 300 and first["counts"]["failed"] == 0
    assert second["counts"] == {
        "total": 300,
        "processed": 300,
        "created": 0,
        "updated": 0,
        "unchanged": 300,
        "failed": 0,
    }
    live = await _live(platform, imp, f"imp_{tag}")
    assert len(live) == 300 and all(r.version == 1 for r in live)

    # An update run changes the stage of every row; its revert restores them.
    changed = [_row(i, tag) for i in range(1, 301)]
    for row in changed:
        row[4] = "evangelist"
    up = await _upload(gw, imp, "owner", _csv(changed))
    await _run(gw, imp, "owner", up.json()["id"], mode="update", match_on="email")
    done = await _until(gw, imp, "owner", up.json()["id"], "completed", "failed")
    assert done["counts"]["updated"] == 300 and done["counts"]["created"] == 0
    contact = live[0]
    got = (await gw.get(f"{API}/contacts/{contact.id}", headers=imp.auth("owner"))).json()
    assert got["lifecycle_stage"] == "evangelist" and got["version"] == 2
    history = await gw.get(f"{API}/audit/history/contact/{contact.id}", headers=imp.auth("owner"))
    assert any(
        h["field"] == "lifecycle_stage" and h["reason"] == "import" for h in history.json()["data"]
    )
    await gw.post(f"{API}/imports/{up.json()['id']}/revert", headers=imp.auth("owner"))
    back = await _until(gw, imp, "owner", up.json()["id"], "reverted", "failed")
    assert back["revert"] == {"reverted": 300, "skipped": 0}
    got = (await gw.get(f"{API}/contacts/{contact.id}", headers=imp.auth("owner"))).json()
    assert got["lifecycle_stage"] in ("customer", "lead") and got["version"] == 3


async def test_crash_mid_import_resumes_from_checkpoint(
    platform_gateway: httpx.AsyncClient, imp: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    tag = uuid.uuid4().hex[:8]
    up = await _upload(
        gw, imp, "owner", _csv([_row(i, tag) for i in range(1, 1001)]), chunk_rows=100
    )
    job_id = uuid.UUID(up.json()["id"])
    seen_at_crash: list[int] = []

    async def crash(_job: uuid.UUID, seq: int) -> None:
        if seq == 3 and not seen_at_crash:
            seen_at_crash.append(len(await _live(platform, imp, f"imp_{tag}")))
            raise RuntimeError("worker died mid-chunk")

    import_jobs.FAULTS[job_id] = crash
    try:
        await _run(gw, imp, "owner", str(job_id))
        done = await _until(gw, imp, "owner", str(job_id), "completed", "failed")
    finally:
        import_jobs.FAULTS.pop(job_id, None)
    # At the crash, exactly the three committed chunks were visible; the fourth
    # (written but not committed) vanished and was redone on the retry.
    assert seen_at_crash == [300]
    assert done["status"] == "completed" and done["attempts"] == 2
    assert done["counts"]["created"] == 1000 and done["counts"]["processed"] == 1000
    live = await _live(platform, imp, f"imp_{tag}")
    assert len(live) == 1000 and len({r.email for r in live}) == 1000


async def test_role_matrix_and_rep_ownership(
    platform_gateway: httpx.AsyncClient,
    imp: CrmTenant,
    other_crm: CrmTenant,
    platform: RunningPlatform,
) -> None:
    gw = platform_gateway
    tag = uuid.uuid4().hex[:8]
    header = [*HEADER, "Owner"]
    rows = [[*_row(i, tag), imp.user_ids["owner"]] for i in range(1, 4)]
    body = _csv(rows, header)
    assert (await _upload(gw, imp, "viewer", body)).status_code == 403
    anon = await gw.post(f"{API}/imports", content=body, headers={"Content-Type": "text/csv"})
    assert anon.status_code == 401
    up = await _upload(gw, imp, "sales_rep", body)
    assert up.status_code == 201, up.text
    job_id = up.json()["id"]
    assert (
        await gw.get(f"{API}/imports/{job_id}", headers=other_crm.auth("owner"))
    ).status_code == 404
    assert (await gw.get(f"{API}/imports/{job_id}", headers=imp.auth("viewer"))).status_code == 404
    assert (await gw.get(f"{API}/imports/{job_id}", headers=imp.auth("owner"))).status_code == 200
    await _run(gw, imp, "sales_rep", job_id, mapping={**up.json()["suggested_mapping"]})
    done = await _until(gw, imp, "sales_rep", job_id, "completed", "failed")
    assert done["counts"]["created"] == 3
    # The owner column is not honoured for a rep: the rows are the rep's.
    live = await _live(platform, imp, f"imp_{tag}")
    assert {r.owner_id for r in live} == {uuid.UUID(imp.user_ids["sales_rep"])}
    mine = await gw.get(f"{API}/imports", headers=imp.auth("sales_rep"))
    assert [j["id"] for j in mine.json()["data"]] == [job_id]


async def test_bad_files_are_handled_safely(
    platform_gateway: httpx.AsyncClient, imp: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    unbalanced = b'First Name,Email\n"Ann,ann@example.com\nBob,bob@example.com\n'
    r = await _upload(gw, imp, "owner", unbalanced)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem")
    assert "line 2" in r.json()["detail"]
    assert (await _upload(gw, imp, "owner", b"")).status_code == 422
    form = await gw.post(
        f"{API}/imports", files={"file": ("a.csv", b"x")}, headers=imp.auth("owner")
    )
    assert form.status_code == 415

    tag = uuid.uuid4().hex[:8]
    text_body = f"First Name;Last Name;Email;Source\nJosé;Müller;jm.{tag}@example.com;imp_{tag}\n"
    utf16 = b"\xff\xfe" + text_body.encode("utf-16-le")
    r = await _upload(gw, imp, "owner", utf16)
    assert r.status_code == 201, r.text
    assert r.json()["encoding"] == "utf-16" and r.json()["columns"][1] == "Last Name"
    cp = text_body.replace(f"jm.{tag}", f"jm2.{tag}").encode("cp1252")
    r2 = await _upload(gw, imp, "owner", cp)
    assert r2.json()["encoding"] == "cp1252"
    bom = b"\xef\xbb\xbf" + text_body.replace(f"jm.{tag}", f"jm3.{tag}").encode()
    r3 = await _upload(gw, imp, "owner", bom)
    assert r3.json()["encoding"] == "utf-8-sig" and r3.json()["columns"][0] == "First Name"
    for up in (r, r2, r3):
        await _run(gw, imp, "owner", up.json()["id"])
        done = await _until(gw, imp, "owner", up.json()["id"], "completed", "failed")
        assert done["counts"]["created"] == 1, done
    names = {(row.first_name, row.email) for row in await _live(platform, imp, f"imp_{tag}")}
    assert names == {("José", f"jm{n}.{tag}@example.com") for n in ("", "2", "3")}

    # Bad mapping / mode requests.
    bad = await gw.post(f"{API}/imports/{r.json()['id']}/run", json={}, headers=imp.auth("owner"))
    assert bad.status_code == 409  # already completed
    up = await _upload(gw, imp, "owner", _csv([_row(1, tag)]))
    wrong = await gw.post(
        f"{API}/imports/{up.json()['id']}/run",
        json={"mapping": {"Email": "shoe_size"}},
        headers=imp.auth("owner"),
    )
    assert wrong.status_code == 422
    no_key = await gw.post(
        f"{API}/imports/{up.json()['id']}/run", json={"mode": "upsert"}, headers=imp.auth("owner")
    )
    assert no_key.status_code == 422


async def test_similar_name_at_the_same_company_is_a_duplicate(
    platform_gateway: httpx.AsyncClient, imp: CrmTenant, platform: RunningPlatform
) -> None:
    gw, owner = platform_gateway, imp.auth("owner")
    tag = uuid.uuid4().hex[:8]
    acme = await gw.post(f"{API}/companies", json={"name": f"Acme {tag}"}, headers=owner)
    other = await gw.post(f"{API}/companies", json={"name": f"Other {tag}"}, headers=owner)
    assert acme.status_code == other.status_code == 201
    known = await gw.post(
        f"{API}/contacts",
        json={"first_name": "Jonathan", "last_name": "Smithers", "company_id": acme.json()["id"]},
        headers=owner,
    )
    assert known.status_code == 201, known.text
    header = ["First Name", "Last Name", "Company", "Source"]
    body = _csv(
        [
            ["Jonathon", "Smithers", f"Acme {tag}", f"sim_{tag}"],  # similar, same company
            ["Jonathan", "Smithers", f"Other {tag}", f"sim_{tag}"],  # same name, other company
            ["Priya", "Raman", f"Acme {tag}", f"sim_{tag}"],  # different person
            ["Jonathan", "Smithers", "", f"sim_{tag}"],  # no company: not this rule
        ],
        header,
    )
    mapping = {
        "First Name": "first_name",
        "Last Name": "last_name",
        "Company": "company",
        "Source": "source",
    }
    job = (await _upload(gw, imp, "owner", body)).json()
    await _run(gw, imp, "owner", job["id"], mapping=mapping)
    done = await _until(gw, imp, "owner", job["id"], "completed", "failed")
    assert done["counts"]["created"] == 3 and done["counts"]["failed"] == 1, done
    errors = (await gw.get(f"{API}/imports/{job['id']}/errors?format=json", headers=owner)).json()[
        "data"
    ]
    assert [(e["row"], e["column"]) for e in errors] == [(1, "Last Name")]
    assert known.json()["id"] in errors[0]["message"]
    # allow_duplicates imports it anyway.
    again = (await _upload(gw, imp, "owner", body)).json()
    await _run(gw, imp, "owner", again["id"], mapping=mapping, allow_duplicates=True)
    done = await _until(gw, imp, "owner", again["id"], "completed", "failed")
    assert done["counts"]["created"] == 4 and done["counts"]["failed"] == 0, done


async def test_owner_column_by_login_email(
    platform_gateway: httpx.AsyncClient, imp: CrmTenant, platform: RunningPlatform
) -> None:
    gw, owner = platform_gateway, imp.auth("owner")
    users = (await gw.get(f"{API}/users", headers=owner)).json()["data"]
    rep = next(u for u in users if u["id"] == imp.user_ids["sales_rep"])
    tag = uuid.uuid4().hex[:8]
    header = ["First Name", "Email", "Owner", "Source"]
    body = _csv(
        [
            ["ByEmail", f"a.{tag}@example.com", rep["email"].upper(), f"own_{tag}"],
            ["ById", f"b.{tag}@example.com", imp.user_ids["sales_rep"], f"own_{tag}"],
            ["Nobody", f"c.{tag}@example.com", f"ghost.{tag}@example.com", f"own_{tag}"],
        ],
        header,
    )
    mapping = {"First Name": "first_name", "Email": "email", "Owner": "owner", "Source": "source"}
    job = (await _upload(gw, imp, "owner", body)).json()
    await _run(gw, imp, "owner", job["id"], mapping=mapping)
    done = await _until(gw, imp, "owner", job["id"], "completed", "failed")
    assert done["counts"]["created"] == 2 and done["counts"]["failed"] == 1, done
    errors = (await gw.get(f"{API}/imports/{job['id']}/errors?format=json", headers=owner)).json()[
        "data"
    ]
    assert [(e["row"], e["column"], e["value"]) for e in errors] == [
        (3, "Owner", f"ghost.{tag}@example.com")
    ]
    live = await _live(platform, imp, f"own_{tag}")
    assert {r.first_name: str(r.owner_id) for r in live} == {
        "ByEmail": imp.user_ids["sales_rep"],
        "ById": imp.user_ids["sales_rep"],
    }
