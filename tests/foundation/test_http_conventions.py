"""Every service speaks the same HTTP conventions (problem+json, ids, health, metrics)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from crm_dev.testing import RunningPlatform, served
from crm_lib.service import build_app
from crm_lib.settings import SERVICE_NAMES

AUTH = {"Authorization": "Bearer test-operator-token"}


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_health_metrics_openapi_request_id(platform: RunningPlatform, service: str) -> None:
    rt = platform.runtime(service)
    app = build_app(platform.definitions[service], rt.settings, runtime=rt)
    async with served(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        live = await client.get("/health/live")
        assert live.status_code == 200
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": True, "nats": True}
        assert (await client.get("/openapi/openapi.json")).json()["openapi"].startswith("3.1")
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "crm_requests_total" in metrics.text
        echoed = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
        assert echoed.headers["x-request-id"] == "abc-123"
        hostile = await client.get("/health/live", headers={"X-Request-ID": "bad id <script>"})
        assert hostile.headers["x-request-id"] != "bad id <script>"
        uuid.UUID(hostile.headers["x-request-id"])
        missing = await client.get("/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert missing.json()["status"] == 404


async def test_validation_errors_are_problem_documents(platform: RunningPlatform) -> None:
    rt = platform.runtime("identity")
    app = build_app(platform.definitions["identity"], rt.settings, runtime=rt)
    async with served(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        for body in (
            {"name": 5, "slug": "ok-slug"},
            {"slug": "UPPER CASE", "name": "x"},
            {},
            {"name": "x", "slug": "fine-slug", "extra": 1},
        ):
            r = await client.post("/internal/v1/tenants", json=body, headers=AUTH)
            assert r.status_code in (400, 422), (body, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            doc = r.json()
            assert {"type", "title", "status", "detail"} <= set(doc)
            assert "Traceback" not in r.text
        bad_json = await client.post(
            "/internal/v1/tenants",
            content=b"{not json",
            headers={**AUTH, "content-type": "application/json"},
        )
        assert bad_json.status_code == 400
        assert bad_json.headers["content-type"].startswith("application/problem+json")
        huge = await client.post(
            "/internal/v1/tenants",
            content=b"x" * (11 * 1024 * 1024),
            headers={**AUTH, "content-type": "application/json"},
        )
        assert huge.status_code == 413
        slug = f"dup-{uuid.uuid4().hex[:8]}"
        first = await client.post(
            "/internal/v1/tenants", json={"name": "A", "slug": slug}, headers=AUTH
        )
        assert first.status_code == 201
        dup = await client.post(
            "/internal/v1/tenants", json={"name": "B", "slug": slug}, headers=AUTH
        )
        assert dup.status_code == 409
        assert dup.headers["content-type"].startswith("application/problem+json")
        anon = await client.get("/internal/v1/tenants")
        assert anon.status_code == 401
        wrong = await client.get("/internal/v1/tenants", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        page = await client.get("/internal/v1/tenants?limit=1", headers=AUTH)
        assert page.status_code == 200 and len(page.json()["data"]) == 1
        bad_cursor = await client.get("/internal/v1/tenants?cursor=%%%", headers=AUTH)
        assert bad_cursor.status_code == 400
        bad_limit = await client.get("/internal/v1/tenants?limit=100000", headers=AUTH)
        assert bad_limit.status_code in (400, 422)
