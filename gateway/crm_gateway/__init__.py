"""CRM API gateway: the single public entry of the platform.

It owns the public URL space: ``/api/v1/<segment>/...`` is routed to the service that
owns ``<segment>`` (``crm_gateway.routing``) by a pure ASGI streaming reverse proxy
(``crm_gateway.proxy``) over one pooled aiohttp session per upstream
(``crm_gateway.upstreams``). It also serves ``/health/live``, ``/health/ready``,
``/metrics`` and the merged OpenAPI document ``/api/v1/openapi.json``
(``crm_gateway.openapi``).

Entry point: ``uvicorn.run("crm_gateway.app:create_app", factory=True, ...)``.
Authentication, tenant resolution, rate limits and idempotency plug in as pure ASGI
layers around the proxy (``create_app(proxy_middleware=[...])``).
"""
