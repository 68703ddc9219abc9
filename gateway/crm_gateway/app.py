"""The gateway's ASGI application.

Composition (outermost first)::

    GatewayApp (pure ASGI dispatcher, looks at the path only)
    |- /api/v1/* except /api/v1/openapi.json, /.well-known/*
    |    RequestContextMiddleware      X-Request-ID, server span from incoming traceparent
    |      *proxy_middleware           default (crm_gateway.layers): CORS, AccessLayer
    |                                  (auth, tenant access, rate limits), Idempotency
    |        ProxyApp                  streams to the owning service (circuit breakers)
    |- everything else (and lifespan)
         Litestar app from crm_lib.http.create_app (has its own RequestContextMiddleware)
           /health/live, /health/ready, /api/v1/openapi.json

    MetricsServer (crm_gateway.metrics)  GET /metrics on its own port (CRM_METRICS_PORT,
                                         default 9464); /metrics on the public port is 404

The Litestar app's lifespan opens and closes the upstream sessions, so the proxy
works under any ASGI server that runs the lifespan protocol. Start it with::

    uvicorn.run("crm_gateway.app:create_app", factory=True, host=..., port=...)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Response, get
from litestar.types import ASGIApp, Receive, Scope, Send

from crm_gateway.layers import GatewayLayers
from crm_gateway.metrics import MetricsServer
from crm_gateway.openapi import OpenAPIAggregator
from crm_gateway.proxy import ROUTE_KEY, ProxyApp
from crm_gateway.routing import API_PREFIX, WELL_KNOWN_PREFIX, RouteTable
from crm_gateway.settings import GatewaySettings
from crm_gateway.upstreams import UpstreamPool
from crm_lib.http import RequestContextMiddleware
from crm_lib.http import create_app as create_litestar_app
from crm_lib.telemetry import describe_error, get_logger, setup_logging, setup_tracing

log = get_logger("crm.gateway")

OPENAPI_PATH = "/api/v1/openapi.json"

#: A pure ASGI middleware factory: takes the inner app, returns the wrapped app.
ProxyMiddleware = Callable[[ASGIApp], ASGIApp]


class GatewayApp:
    """Pure ASGI dispatcher between the proxy chain and the gateway's own Litestar app."""

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        routes: RouteTable,
        pool: UpstreamPool,
        openapi: OpenAPIAggregator,
        proxy: ASGIApp,
        site: Litestar,
        layers: GatewayLayers | None = None,
        metrics: MetricsServer | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.routes = routes
        self.pool = pool
        self.openapi = openapi
        self.proxy = proxy
        self.site = site
        self.layers = layers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if (path.startswith(API_PREFIX) and path != OPENAPI_PATH) or path.startswith(
                WELL_KNOWN_PREFIX
            ):
                scope[ROUTE_KEY] = self.routes.resolve(path)  # type: ignore[literal-required]
                await self._proxy_guarded(scope, receive, send)
                return
        await self.site(scope, receive, send)

    async def _proxy_guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The proxy chain; a bug in it answers 500 and is logged without its message.

        The ASGI server would log the exception's text, which may quote the request.
        """
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.proxy(scope, receive, tracking_send)
        except Exception as exc:
            log.error(
                "gateway.unhandled", path=scope["path"], error=describe_error(exc), exc_info=exc
            )
            if not started:
                from crm_gateway.proxy import send_problem

                await send_problem(
                    send,
                    500,
                    "An unexpected error occurred. Quote the request id when contacting support.",
                    instance=scope["path"],
                )


def create_app(
    settings: GatewaySettings | None = None,
    *,
    proxy_middleware: Sequence[ProxyMiddleware] | None = None,
) -> GatewayApp:
    """Build the gateway. ``proxy_middleware`` wraps the proxy, first item outermost.

    ``None`` (the default) means the production layers of ``crm_gateway.layers``
    (CORS, authentication + tenant access + rate limits, idempotency); pass a list to
    replace them (``[]`` for a bare proxy).
    """
    settings = settings or GatewaySettings()
    setup_logging(settings)
    setup_tracing(settings)

    routes = RouteTable(settings)
    pool = UpstreamPool(settings)
    openapi = OpenAPIAggregator(settings, pool)
    layers: GatewayLayers | None = None
    if proxy_middleware is None:
        layers = GatewayLayers(settings, pool)
        proxy_middleware = layers.middleware()

    inner: ASGIApp = ProxyApp(settings, routes, pool)
    for layer in reversed(proxy_middleware):
        inner = layer(inner)
    proxy = RequestContextMiddleware(inner, service=settings.service_name)

    @get(OPENAPI_PATH, include_in_schema=False)
    async def merged_openapi() -> Response[dict[str, Any]]:
        return Response(await openapi.document(), media_type="application/json")

    metrics = (
        MetricsServer(settings.metrics_host, settings.metrics_port)
        if settings.metrics_port is not None
        else None
    )

    @asynccontextmanager
    async def upstream_sessions(_app: Litestar) -> AsyncIterator[None]:
        await pool.start()
        if layers is not None:
            layers.start()
        if metrics is not None:
            await metrics.start()
        try:
            yield
        finally:
            if metrics is not None:
                await metrics.close()
            if layers is not None:
                await layers.close()
            await pool.close()

    def ready_check(name: str) -> Callable[[], Any]:
        async def check() -> bool:
            return (await pool.readiness()).get(name, False)

        return check

    site = create_litestar_app(
        service=settings.service_name,
        route_handlers=[merged_openapi],
        readiness={name: ready_check(name) for name in pool.urls},
        lifespan=[upstream_sessions],
        metrics_endpoint=False,
    )
    return GatewayApp(
        settings=settings,
        routes=routes,
        pool=pool,
        openapi=openapi,
        proxy=proxy,
        site=site,
        layers=layers,
        metrics=metrics,
    )
