"""Hostile bodies for every operation with a body: a 4xx problem document, never a 5xx.

Per variant (one test each), every operation of the merged OpenAPI whose body is JSON
(form-encoded ones too, for the variants that make sense there) gets the hostile body
from tenant A's owner (nobody, for anonymous operations), with A's own ids in the path:

* invalid UTF-8 -> exactly 400 (a password in such a body must never reach a log);
* deep nesting, truncated JSON, NUL bytes in every string, numbers far beyond 64 bits,
  wrong types, oversized strings -> 4xx ``application/problem+json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from crm_dev.testing_logs import remember_secret
from tests.security.access_table import load_table
from tests.security.checks import is_problem, item_refused, line, oauth_error, send
from tests.security.resources import Tenant, bounded
from tests.security.spec import IdSlot, Operation, Request, Spec, build_request

HUGE = "1" + "0" * 400  # a JSON number no 64-bit type or float holds
#: The readable part of the password in the invalid UTF-8 body: registered with the log
#: scan (crm_dev.testing_logs), so a service that logs the body fails the session.
HOSTILE_PASSWORD = remember_secret("Hostile-Passw0rd-sec10-")
INVALID_UTF8 = (
    b'{"name": "caf\xe9 \xff\xfe", "email": "x@example.com", "password": "'
    + HOSTILE_PASSWORD.encode()
    + b'\xc3\x28\xff"}'
)


def _map_leaves(value: Any, leaf: Callable[[Any], Any]) -> Any:
    if isinstance(value, dict):
        return {k: _map_leaves(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_leaves(v, leaf) for v in value]
    return leaf(value)


def _dump(body: Any) -> bytes:
    return json.dumps(body if body is not None else {}).encode()


def _strings(body: Any, replacement: str) -> bytes:
    """``body`` with every string (or, with none, one field) set to ``replacement``."""
    body = body if isinstance(body, dict) and body else {"name": "x"}
    replaced = _map_leaves(body, lambda v: replacement if isinstance(v, str) else v)
    if replaced == body:
        replaced = {**body, "name": replacement}
    return _dump(replaced)


def _huge_numbers(body: Any) -> bytes:
    body = body if isinstance(body, dict) and body else {"name": 1}
    marker = "__HUGE__"
    replaced = _map_leaves(body, lambda v: marker)
    return _dump(replaced).replace(f'"{marker}"'.encode(), HUGE.encode())


def _wrong_types(body: Any) -> bytes:
    body = body if isinstance(body, dict) and body else {"name": "x"}

    def flip(v: Any) -> Any:
        if isinstance(v, bool):
            return "yes"
        if isinstance(v, int | float):
            return "not a number"
        if isinstance(v, str):
            return {"nested": [1, 2, 3]}
        return 12345

    return _dump(_map_leaves(body, flip))


#: variant -> (body bytes from the generated valid body, content types it applies to)
VARIANTS: dict[str, tuple[Callable[[Any], bytes], tuple[str, ...]]] = {
    "invalid utf-8": (
        lambda body: INVALID_UTF8,
        ("application/json", "application/x-www-form-urlencoded"),
    ),
    "deep nesting": (lambda body: b"[" * 100_000 + b"]" * 100_000, ("application/json",)),
    "deep object nesting": (
        lambda body: b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
        ("application/json",),
    ),
    "truncated json": (lambda body: _dump(body)[:-1] + b'"', ("application/json",)),
    "nul bytes": (lambda body: _strings(body, "a\x00b\u0000c"), ("application/json",)),
    "huge numbers": (_huge_numbers, ("application/json",)),
    "wrong types": (_wrong_types, ("application/json",)),
    "top-level array": (lambda body: b"[1, 2, 3]", ("application/json",)),
    "oversized strings": (lambda body: _strings(body, "x" * 300_000), ("application/json",)),
    "form with NUL and invalid escapes": (
        lambda body: b"token=%00%ff%fe&token_type_hint=%E0%A4%A&grant_type=\x00",
        ("application/x-www-form-urlencoded",),
    ),
}

#: Variants whose body may be a legitimate request: only "never 5xx" holds (RFC 7009/7662:
#: revoking or introspecting an unknown token answers 200).
NOT_ALWAYS_4XX = frozenset({"form with NUL and invalid escapes"})
#: Operations answering 200 with one result per item (each item's own 4xx inside).
BATCH_OPERATIONS = frozenset(
    f"POST /api/v1/{entity}/batch/{action}"
    for entity in ("contacts", "companies")
    for action in ("create", "update", "upsert")
)
#: Operations whose errors are RFC 6749 documents rather than problem documents.
OAUTH_FORMAT = frozenset({"POST /api/v1/oauth/token"})

#: (variant, operation) -> why today's answer is wrong: strict xfails, excluded from the test.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def _ids(tenant: Tenant):
    def pick(slot: IdSlot) -> str:
        return tenant.ids[slot.kind][0]  # type: ignore[index]

    return pick


def _hostile(op: Operation, base: Request, variant: str) -> Request | None:
    make, content_types = VARIANTS[variant]
    if op.body_type not in content_types or base.raw is not None:
        return None
    return Request(
        op, base.path, base.query, raw=make(base.body), content_type=op.body_type, note=variant
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_hostile_bodies_get_a_4xx_problem(
    sec_gw: httpx.AsyncClient, spec: Spec, attacker: Tenant, variant: str
) -> None:
    table = load_table()
    reqs: list[tuple[Request, dict[str, str]]] = []
    for op in spec.operations:
        if op.body_schema is None or op.unknown_params():
            continue
        req = _hostile(op, build_request(op, _ids(attacker)), variant)
        if req is None:
            continue
        anonymous = op.key in table and table[op.key].anonymous
        reqs.append((req, {} if anonymous else attacker.owner))
    assert reqs, variant
    answers = await bounded([send(sec_gw, r, h) for r, h in reqs], limit=8)
    failures = []
    for (req, _), r in zip(reqs, answers, strict=True):
        if (variant, req.op.key) in KNOWN_BUGS:
            continue
        if r.status_code >= 500:
            failures.append(line(req, variant, r))
        elif variant in NOT_ALWAYS_4XX:
            continue
        elif r.status_code == 200 and req.op.key in BATCH_OPERATIONS and item_refused(r):
            continue  # per-item results, every item refused: the batch design
        elif req.op.key in OAUTH_FORMAT and oauth_error(r):
            continue
        elif variant == "invalid utf-8" and req.op.json_body and r.status_code != 400:
            failures.append(line(req, variant + " (expected 400)", r))
        elif not 400 <= r.status_code < 500 or not is_problem(r):
            failures.append(line(req, variant, r))
    assert not failures, f"{len(failures)} of {len(reqs)}:\n" + "\n".join(failures[:40])
