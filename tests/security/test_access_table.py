"""Every operation x every caller against the one table of who may do what.

``docs/access.yaml`` has an entry per OpenAPI operation (``METHOD /path``): the roles
allowed, the scope an API key or OAuth client needs (``any``: every credential; none:
users only), whether it is anonymous, and what a denied caller gets (403, or 404 where
the rule hides existence). Tenant A's users of every role, nobody, and API keys / OAuth
client tokens with and without the scope call every operation:

* allowed -> anything but an authentication/authorization refusal (401/403) or a 5xx
  (a 404 for a record the role cannot see, or a 422 for the generated body, is fine);
* denied -> exactly the table's status, as a problem document;
* anonymous on a non-anonymous operation -> 401.

Ids come from resources of tenant A: fresh ones for every operation that changes
something (so a delete cannot starve the next call), denied callers first.
``CRM_SECURITY_OBSERVE=<file>`` writes what every caller got, per operation (YAML), to
help fill the table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml

from tests.security.access_table import (
    ANY_TOKEN,
    ROLES,
    Rule,
    load_table,
    scopes_with,
    scopes_without,
)
from tests.security.checks import is_auth_refusal, is_problem, line, send
from tests.security.resources import Caller, Tenant, bounded
from tests.security.spec import IdSlot, Operation, Spec, build_request

#: an unrelated scope: what "any credential" is tested with
UNRELATED_SCOPE = ("webhooks:read",)

#: (operation, caller name) -> why today's answer is wrong. Each is an xfail (strict) in
#: test_known_access_bug until fixed, and excluded from test_access_table.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


async def test_table_covers_exactly_the_openapi(spec: Spec) -> None:
    table = load_table()
    operations = {op.key for op in spec.operations}
    missing = sorted(operations - set(table))
    stale = sorted(set(table) - operations)
    assert not missing and not stale, (
        "docs/access.yaml must have one entry per OpenAPI operation.\n"
        f"Operations without an entry: {missing}\nEntries without an operation: {stale}"
    )


@dataclass
class Expectation:
    caller: Caller
    allowed: bool


#: Caller kinds judged by the table (anything else must no longer authenticate: 401).
TABLE_KINDS = frozenset({"user", "api_key", "client"})


async def callers_for(rule: Rule, tenant: Tenant, principals: dict[str, Caller]):
    out: list[Expectation] = []
    for caller in principals.values():
        if caller.kind == "user" and caller.role in ROLES:
            out.append(Expectation(caller, rule.allows_role(caller.role)))
        else:  # nobody, or revoked / deactivated principals: only anonymous operations
            out.append(Expectation(caller, rule.anonymous))
    for kind in ("api_key", "client"):
        if rule.scope is None:
            cred = await tenant.api_credential(kind, scopes_without(None))
            out.append(Expectation(cred, rule.anonymous))
        elif rule.scope == ANY_TOKEN:
            out.append(Expectation(await tenant.api_credential(kind, UNRELATED_SCOPE), True))
        else:
            yes = await tenant.api_credential(kind, scopes_with(rule.scope))
            no = await tenant.api_credential(kind, scopes_without(rule.scope))
            out.extend([Expectation(yes, True), Expectation(no, rule.anonymous)])
    return out


def _fresh(op: Operation, slot: IdSlot) -> bool:
    """Whether this slot gets a resource of its own (the operation may change/delete it)."""
    if op.method == "GET" or slot.kind is None:
        return False
    if slot.kind == "user":
        # users are costly (seats): only operations on the user itself get a fresh one
        return slot.where == "path" and op.path.startswith("/api/v1/users/")
    return True


async def check_operation(
    gw: httpx.AsyncClient, op: Operation, rule: Rule, tenant: Tenant, principals
) -> tuple[list[str], dict[str, int]]:
    fresh: dict[IdSlot, str] = {}
    for slot in op.id_slots():
        if _fresh(op, slot):
            fresh[slot] = await tenant.make(slot.kind)  # type: ignore[arg-type]

    def ids(slot: IdSlot) -> str:
        return fresh.get(slot) or tenant.ids[slot.kind][0]  # type: ignore[index]

    expectations = await callers_for(rule, tenant, principals)
    expectations.sort(key=lambda e: e.allowed)  # denied first: they must change nothing
    problems: list[str] = []
    seen: dict[str, int] = {}
    for exp in expectations:
        req = build_request(op, ids)
        r = await send(gw, req, exp.caller.headers)
        seen[exp.caller.name] = r.status_code
        who = f"{exp.caller.name} ({'allowed' if exp.allowed else 'denied'})"
        if r.status_code >= 500:
            problems.append(line(req, who, r))
        elif rule.anonymous:
            if is_auth_refusal(r):
                problems.append(line(req, who, r))
        elif exp.caller.kind not in TABLE_KINDS:  # nobody, revoked, deactivated
            if not is_auth_refusal(r):
                problems.append(line(req, who + " expected 401", r))
        elif exp.allowed:
            if r.status_code in (401, 403):
                problems.append(line(req, who, r))
        elif r.status_code != rule.denied or not is_problem(r):
            problems.append(line(req, f"{who} expected {rule.denied}", r))
    return problems, seen


@dataclass
class Matrix:
    problems: dict[str, list[str]]  # operation key -> problems
    seen: dict[str, dict[str, int]]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def matrix(
    sec_gw: httpx.AsyncClient, spec: Spec, attacker: Tenant, principals: dict[str, Caller]
) -> Matrix:
    table = load_table()
    ops = [op for op in spec.operations if op.key in table and not op.unknown_params()]
    # credentials first, once (creating them is not what is being tested)
    for rule in {r.scope for r in table.values()}:
        await callers_for(Rule("-", frozenset(), rule, False, 403, ""), attacker, {})
    results = await bounded(
        [check_operation(sec_gw, op, table[op.key], attacker, principals) for op in ops],
        limit=6,
    )
    matrix = Matrix({}, {})
    for op, (problems, seen) in zip(ops, results, strict=True):
        if problems:
            matrix.problems[op.key] = problems
        matrix.seen[op.key] = seen
    observe = os.environ.get("CRM_SECURITY_OBSERVE")
    if observe:
        Path(observe).write_text(yaml.safe_dump(matrix.seen, sort_keys=True))  # noqa: ASYNC240
    return matrix


def _known(op: str, line_: str) -> bool:
    return any(op == k_op and line_.startswith(k_who + " ") for k_op, k_who in KNOWN_BUGS)


async def test_access_table(matrix: Matrix) -> None:
    unexpected = {
        op: [p for p in problems if not _known(op, p)] for op, problems in matrix.problems.items()
    }
    unexpected = {k: v for k, v in unexpected.items() if v}
    report = [f"{op}:\n    " + "\n    ".join(lines) for op, lines in sorted(unexpected.items())]
    assert not unexpected, (
        f"{sum(map(len, unexpected.values()))} answers disagree with docs/access.yaml:\n"
        + "\n".join(report)
    )


@pytest.mark.parametrize(
    ("operation", "caller"),
    [
        pytest.param(op, who, marks=pytest.mark.xfail(strict=True, reason=why))
        for (op, who), why in KNOWN_BUGS.items()
    ]
    or [pytest.param("-", "-", marks=pytest.mark.skip(reason="no known access bug"))],
)
async def test_known_access_bug(matrix: Matrix, operation: str, caller: str) -> None:
    lines = [p for p in matrix.problems.get(operation, []) if p.startswith(caller + " ")]
    assert not lines, "\n".join(lines)
