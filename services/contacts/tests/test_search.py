"""Search through the real gateway: ranking, cursor paging over the ranked candidates."""

from __future__ import annotations

import uuid

import httpx

from services.contacts.tests.conftest import CrmTenant
from services.contacts.tests.test_contacts_api import API, _contact


async def _search(gw: httpx.AsyncClient, h: dict[str, str], **params: str) -> dict:
    r = await gw.get(f"{API}/contacts", params=params, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


async def test_search_pages_with_cursor_and_ranks_exact_words_first(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    h = crm.auth("owner")
    word = "zq" + uuid.uuid4().hex[:10]
    exact = await _contact(gw, crm, "owner", first_name="Ann", last_name=word)
    longer = [
        await _contact(gw, crm, "owner", first_name="Ann", last_name=f"{word}{suffix}")
        for suffix in ("abcdefgh", "xyzxyzxyz", "mnopqrstu", "klmklmklm")
    ]
    first = await _search(gw, h, q=word, limit="2")
    assert first["data"][0]["id"] == exact["id"]
    seen = [c["id"] for c in first["data"]]
    cursor = first["next_cursor"]
    while cursor:
        page = await _search(gw, h, q=word, limit="2", cursor=cursor)
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == {exact["id"], *(c["id"] for c in longer)}
    # A typo finds them through the trigram branch (no exact/prefix match exists).
    typo = word[:-2] + word[-1] + word[-2]
    assert exact["id"] in {c["id"] for c in (await _search(gw, h, q=typo))["data"]}


async def test_list_cursor_on_default_sort_walks_every_record_once(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    h = crm.auth("owner")
    tag = f"pg-{uuid.uuid4().hex[:6]}"
    made = {(await _contact(gw, crm, "owner", tags=[tag]))["id"] for _ in range(5)}
    for sort in ("-updated_at", "updated_at", "-created_at"):
        seen: list[str] = []
        cursor = None
        while True:
            params = {"tag": tag, "limit": "2", "sort": sort}
            if cursor:
                params["cursor"] = cursor
            page = await _search(gw, h, **params)
            seen += [c["id"] for c in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 5 and set(seen) == made, sort
