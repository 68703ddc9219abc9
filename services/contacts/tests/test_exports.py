"""CSV/JSON export jobs through the gateway: visibility, masking, formula safety, roles."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx

from crm_dev.testing import eventually
from services.contacts.tests.conftest import CrmTenant

API = "/api/v1"


async def _export(gw: httpx.AsyncClient, crm: CrmTenant, who: str, **body: Any) -> dict[str, Any]:
    r = await gw.post(f"{API}/exports", json=body, headers=crm.auth(who))
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]

    async def done() -> dict[str, Any] | None:
        got = await gw.get(f"{API}/exports/{export_id}", headers=crm.auth(who))
        assert got.status_code == 200, got.text
        return got.json() if got.json()["status"] in ("completed", "failed") else None

    return await eventually(done, timeout=60, interval=0.1)


async def test_export_respects_visibility_and_is_formula_safe(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, other_crm: CrmTenant
) -> None:
    gw = platform_gateway
    source = f"exp_{uuid.uuid4().hex[:8]}"
    for who, first in (
        ("sales_rep", "=SUM(A1:A9)"),
        ("sales_rep", "Plain"),
        ("sales_rep2", "Hidden"),
        ("owner", "Boss"),
    ):
        r = await gw.post(
            f"{API}/contacts?allow_duplicate=true",
            json={"first_name": first, "last_name": "Exp", "source": source, "tags": ["x"]},
            headers=crm.auth(who),
        )
        assert r.status_code == 201, r.text

    # A rep exports only what they see, with formula cells neutralised.
    job = await _export(
        gw,
        crm,
        "sales_rep",
        format="csv",
        query=f"source={source}",
        fields=["first_name", "last_name", "tags", "address", "owner_id"],
    )
    assert job["status"] == "completed" and job["rows"] == 2, job
    got = await gw.get(job["download_url"], headers=crm.auth("sales_rep"))
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.text)))
    assert rows[0][:3] == ["first_name", "last_name", "tags"] and "address.city" in rows[0]
    assert sorted(r[0] for r in rows[1:]) == ["'=SUM(A1:A9)", "Plain"]
    assert all(r[rows[0].index("owner_id")] == crm.user_ids["sales_rep"] for r in rows[1:])

    # The manager sees all four, as JSON (query as an object).
    job = await _export(gw, crm, "sales_manager", format="json", query={"source": source})
    data = (await gw.get(job["download_url"], headers=crm.auth("sales_manager"))).json()
    assert sorted(d["first_name"] for d in data) == ["=SUM(A1:A9)", "Boss", "Hidden", "Plain"]
    assert {"id", "emails", "custom_fields", "version"} <= set(data[0])

    # An empty result is a valid file.
    empty = await _export(gw, crm, "owner", format="json", query={"source": "nothing_here"})
    assert (await gw.get(empty["download_url"], headers=crm.auth("owner"))).json() == []

    # Someone else's export, another tenant, anonymous: not found / unauthorised.
    for who in ("owner", "sales_rep2"):
        r = await gw.get(f"{API}/exports/{job['id']}", headers=crm.auth(who))
        assert r.status_code == 404
        r = await gw.get(f"{API}/exports/{job['id']}/download", headers=crm.auth(who))
        assert r.status_code == 404
    assert (
        await gw.get(f"{API}/exports/{job['id']}", headers=other_crm.auth("owner"))
    ).status_code == 404
    assert (await gw.get(f"{API}/exports/{job['id']}")).status_code == 401
    assert (await gw.post(f"{API}/exports", json={}, headers=crm.auth("viewer"))).status_code == 403
    bad = await gw.post(
        f"{API}/exports", json={"query": "nonsense__op=1"}, headers=crm.auth("owner")
    )
    assert bad.status_code == 422
    bad = await gw.post(f"{API}/exports", json={"fields": ["shoe"]}, headers=crm.auth("owner"))
    assert bad.status_code == 422

    # Audited.
    audit = await gw.get(f"{API}/audit/access?action=export", headers=crm.auth("owner"))
    assert any(a["details"].get("export_id") == job["id"] for a in audit.json()["data"])
    listed = await gw.get(f"{API}/exports", headers=crm.auth("sales_manager"))
    assert job["id"] in [j["id"] for j in listed.json()["data"]]


async def test_export_masks_sensitive_fields(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    key = f"pid_{uuid.uuid4().hex[:6]}"
    r = await gw.post(
        f"{API}/custom-fields",
        json={
            "entity": "contact",
            "key": key,
            "label": "Personal id",
            "type": "text",
            "sensitive": True,
        },
        headers=crm.auth("owner"),
    )
    assert r.status_code == 201, r.text
    source = f"exs_{uuid.uuid4().hex[:8]}"
    r = await gw.post(
        f"{API}/contacts?allow_duplicate=true",
        json={"first_name": "Secret", "source": source, "custom_fields": {key: "AB123456"}},
        headers=crm.auth("owner"),
    )
    assert r.status_code == 201, r.text
    rep_view = await _export(gw, crm, "sales_manager", query={"source": source})
    text = (await gw.get(rep_view["download_url"], headers=crm.auth("sales_manager"))).text
    assert "AB123456" not in text and f"cf.{key}" in text
    admin_view = await _export(gw, crm, "owner", query={"source": source})
    text = (await gw.get(admin_view["download_url"], headers=crm.auth("owner"))).text
    assert "AB123456" in text
