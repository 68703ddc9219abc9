"""Search through the real gateway: ranking, cursor paging over the ranked candidates,
the per-tenant search dictionary (``search_words``) and typo correction through it."""

from __future__ import annotations

import csv
import io
import random
import string
import uuid

import httpx
from sqlalchemy import select

from crm_contacts.models import SearchWord
from crm_dev.testing import RunningPlatform, eventually
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


def _word(n: int = 9) -> str:
    """A random letters-only word (dictionary words have no digits) without a ``q`` and
    without a letter twice in a row (so a swap of two letters always makes a typo)."""
    out = "zx"
    while len(out) < n + 2:
        c = random.choice(string.ascii_lowercase.replace("q", ""))
        if c != out[-1]:
            out += c
    return out


def _swap(word: str, i: int) -> str:
    """``word`` with the letters at ``i`` and ``i + 1`` swapped (a typing slip)."""
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


async def _dictionary(platform: RunningPlatform, crm: CrmTenant, words: list[str]) -> set[str]:
    """Which of ``words`` the tenant's search dictionary holds."""
    async with platform.runtime("contacts").db.tenant_session(crm.tenant_id) as s:
        found = await s.scalars(select(SearchWord.word).where(SearchWord.word.in_(words)))
        return set(found.all())


async def _ids(gw: httpx.AsyncClient, h: dict[str, str], q: str) -> list[str]:
    return [c["id"] for c in (await _search(gw, h, q=q, limit="100"))["data"]]


async def test_dictionary_is_filled_by_create_update_company_and_import(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    h = crm.auth("owner")
    first, last, renamed, company, local, digits = (_word() for _ in range(6))
    made = await _contact(
        gw,
        crm,
        "owner",
        first_name=first.capitalize(),
        last_name=last.capitalize(),
        emails=[{"address": f"{local}.x{digits}7@example.com"}],
    )
    # Letters-only runs of names and email parts go in; runs with digits and short ones don't.
    assert await _dictionary(platform, crm, [first, last, local, f"x{digits}7"]) == {
        first,
        last,
        local,
    }
    r = await gw.patch(f"{API}/contacts/{made['id']}", json={"last_name": renamed}, headers=h)
    assert r.status_code == 200, r.text
    assert await _dictionary(platform, crm, [renamed]) == {renamed}
    r = await gw.post(
        f"{API}/companies", json={"name": f"{company.capitalize()} Holdings"}, headers=h
    )
    assert r.status_code == 201, r.text
    assert await _dictionary(platform, crm, [company, "holdings"]) == {company, "holdings"}

    # A CSV import (COPY path) adds its rows' words in one statement per chunk.
    imported = [_word() for _ in range(3)]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["First Name", "Last Name"])
    writer.writerows([["Imported", w.capitalize()] for w in imported])
    up = await gw.post(
        f"{API}/imports",
        content=buf.getvalue().encode(),
        params={"filename": "words.csv"},
        headers={**h, "Content-Type": "text/csv"},
    )
    assert up.status_code == 201, up.text
    run = await gw.post(f"{API}/imports/{up.json()['id']}/run", json={}, headers=h)
    assert run.status_code == 202, run.text

    async def finished() -> dict | None:
        got = (await gw.get(f"{API}/imports/{up.json()['id']}", headers=h)).json()
        return got if got["status"] in ("completed", "failed") else None

    done = await eventually(finished, timeout=60, interval=0.2)
    assert done["status"] == "completed" and done["counts"]["created"] == 3, done
    assert await _dictionary(platform, crm, imported) == set(imported)
    # ... and the imported people are then found by a typo of their name.
    target = imported[0]
    hits = (await _search(gw, h, q=_swap(target, 4)))["data"]
    assert [c["last_name"] for c in hits][:1] == [target.capitalize()]


async def test_typo_of_a_name_is_corrected_through_the_dictionary(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant
) -> None:
    gw = platform_gateway
    h = crm.auth("owner")
    last = _word()
    jennifer = await _contact(gw, crm, "owner", first_name="Jennifer", last_name=last)
    other = await _contact(gw, crm, "owner", first_name="Jenny", last_name=last)
    # A common first name mistyped next to an exact last name: only Jennifer matches.
    assert await _ids(gw, h, f"jeninfer {last}") == [jennifer["id"]]
    # The last name mistyped (letters swapped): both, and a swap in a short word too,
    # which trigram similarity alone would not find (one edit away in the dictionary).
    assert set(await _ids(gw, h, _swap(last, 5))) == {jennifer["id"], other["id"]}
    short = "zq" + _word(3)[2:]
    tiny = await _contact(gw, crm, "owner", first_name="Ada", last_name=short)
    assert tiny["id"] in await _ids(gw, h, _swap(short, 2))
    # The closest dictionary word ranks first: one edit from the typo before two edits.
    near = await _contact(gw, crm, "owner", first_name="Ann", last_name=last[:-1] + "q")
    ranked = await _ids(gw, h, _swap(last, 3))
    assert set(ranked[:2]) == {jennifer["id"], other["id"]} and near["id"] in ranked[2:]
    # A part of a word (no word starts with it) finds the words containing it.
    assert set(await _ids(gw, h, last[4:])) == {jennifer["id"], other["id"]}
    # Visibility still applies on the fuzzy path: a rep sees none of the owner's records.
    assert await _ids(gw, crm.auth("sales_rep"), _swap(last, 5)) == []


async def test_erasure_removes_words_only_the_erased_person_had(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    h = crm.auth("owner")
    own_first, own_last, shared = _word(), _word(), _word()
    person = await _contact(
        gw,
        crm,
        "owner",
        first_name=own_first,
        last_name=f"{own_last}-{shared}",
        emails=[{"address": f"{own_first}@{shared}.example"}],
    )
    await _contact(gw, crm, "owner", first_name="Keeps", last_name=shared)
    assert await _dictionary(platform, crm, [own_first, own_last, shared]) == {
        own_first,
        own_last,
        shared,
    }
    r = await gw.post(
        f"{API}/gdpr/erasures", json={"contact_id": person["id"], "reason": "Art. 17"}, headers=h
    )
    assert r.status_code in (201, 202), r.text
    assert r.json()["receipts"]["contacts"]["records"]["search_words"] == 2
    # The erased person's own words are gone; a word another live contact has stays.
    assert await _dictionary(platform, crm, [own_first, own_last, shared]) == {shared}
    assert person["id"] not in await _ids(gw, h, _swap(own_last, 4))
