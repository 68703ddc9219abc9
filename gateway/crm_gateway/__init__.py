"""CRM API gateway: the single public entry of the platform.

It owns the public URL space: ``/api/v1/<segment>/...`` is routed to the service that
owns ``<segment>`` (``crm_gateway.routing``) by a pure ASGI streaming reverse proxy
(``crm_gateway.proxy``) over one pooled aiohttp session per upstream
(``crm_gateway.upstreams``). It also serves ``/health/live``, ``/health/ready``,
``/metrics`` and the merged OpenAPI document ``/api/v1/openapi.json``
(``crm_gateway.openapi``).

Entry point: ``uvicorn.run("crm_gateway.app:create_app", factory=True, ...)``.
Authentication, tenant access, rate limits, idempotency and CORS are pure ASGI layers
around the proxy (``crm_gateway.layers``; ``create_app(proxy_middleware=[...])`` replaces
them), and the proxy keeps a circuit breaker per upstream (``crm_gateway.circuit``).
"""
