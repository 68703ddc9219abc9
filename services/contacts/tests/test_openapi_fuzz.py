"""Schemathesis over every contacts operation of the gateway's merged OpenAPI: no 5xx.

Cases are generated from the published schema (valid and invalid shapes) and sent
through the real gateway with an owner's token of a tenant of its own, so the
destructive ones cannot disturb other tests. The servers run on the test's event
loop, so the blocking schemathesis calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from crm_dev.testing import SmtpSink
from crm_gateway.routing import _OWNERS as OWNERS
from services.contacts.tests.conftest import make_tenant

EXAMPLES_PER_OPERATION = 12


def _contacts_operation(path: str) -> bool:
    segment = path.removeprefix("/api/v1/").split("/", 1)[0]
    return segment in OWNERS["contacts"]


def _fuzz(raw: dict[str, Any], base_url: str, auth: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_dict(raw)
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if _contacts_operation(op.path)]
    assert len(operations) > 40, [op.label for op in operations]

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=auth, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} query={case.query!r} "
                    f"body={str(case.body)[:200]!r} -> {response.status_code} {response.text[:200]}"
                )
            elif response.status_code >= 400:
                found = response.headers.get("content-type") or [""]
                kind = found[0] if isinstance(found, list) else found
                if not kind.startswith("application/problem+json"):
                    failures.append(
                        f"{case.method} {case.formatted_path}: {response.status_code} as {kind}"
                    )

        check()
    return failures


async def test_contacts_api_survives_schemathesis(
    platform_gateway: httpx.AsyncClient, smtp_server: SmtpSink
) -> None:
    tenant = await make_tenant(platform_gateway, smtp_server, roles=("owner",))
    r = await platform_gateway.get("/api/v1/openapi.json")
    assert r.status_code == 200, r.text
    raw = r.json()
    failures = await asyncio.to_thread(
        _fuzz, raw, str(platform_gateway.base_url).rstrip("/"), tenant.auth("owner")
    )
    assert not failures, "\n".join(failures[:20])
