"""One trace follows a request into identity, its outbox publish and the consumers."""

from __future__ import annotations

import uuid

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from crm_dev.testing import RunningPlatform, served
from crm_lib.service import build_app
from tests.foundation.helpers import eventually, wait_status

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def test_request_publish_and_consumers_share_one_trace(
    platform: RunningPlatform, span_exporter: InMemorySpanExporter
) -> None:
    identity = platform.runtime("identity")
    app = build_app(platform.definitions["identity"], identity.settings, runtime=identity)
    slug = f"trace-{uuid.uuid4().hex[:8]}"
    async with served(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post(
            "/internal/v1/tenants",
            json={"name": "Traced Co", "slug": slug},
            headers={"Authorization": "Bearer test-operator-token", "traceparent": TRACEPARENT},
        )
    assert response.status_code == 201, response.text
    tenant_id = uuid.UUID(response.json()["id"])
    await wait_status(identity, tenant_id, "active")

    def in_trace() -> list:
        return [
            s
            for s in span_exporter.get_finished_spans()
            if format(s.context.trace_id, "032x") == TRACE_ID
        ]

    async def consumers_seen() -> list | None:
        spans = in_trace()
        services = {s.instrumentation_scope.name for s in spans if s.kind == SpanKind.CONSUMER}
        wanted = {
            f"crm.{svc}.consumer"
            for svc in ("identity", "contacts", "sales", "marketing", "support")
        }
        return spans if wanted <= services else None

    spans = await eventually(consumers_seen, timeout=30)
    server = [s for s in spans if s.kind == SpanKind.SERVER]
    assert server and server[0].name.startswith("POST /internal/v1/tenants")
    producers = [s for s in spans if s.kind == SpanKind.PRODUCER]
    created_publish = [p for p in producers if p.name.endswith("identity.tenant.created publish")]
    assert created_publish, [p.name for p in producers]
    # The publish span descends from the request (the outbox row kept its context)...
    assert created_publish[0].parent.span_id == server[0].context.span_id
    contacts_consume = [
        s
        for s in spans
        if s.kind == SpanKind.CONSUMER
        and s.instrumentation_scope.name == "crm.contacts.consumer"
        and "identity.tenant.created" in s.name
    ]
    assert contacts_consume[0].parent.span_id == created_publish[0].context.span_id
    # ...and the saga continues in the same trace: contacts reports back to identity.
    assert any(p.name.endswith("contacts.tenant.provisioned publish") for p in producers)
