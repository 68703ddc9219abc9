"""Prometheus metrics of proxied requests, and the metrics listener.

Registered once per process in the default registry. The gateway's port is public, so
the registry (with the Litestar metrics of the gateway's own endpoints) is served by
:class:`MetricsServer` on a separate port (``CRM_METRICS_PORT``, default 9464) and
``/metrics`` on the public port answers 404.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.registry import CollectorRegistry

from crm_lib.telemetry import describe_error, get_logger

log = get_logger("crm.gateway.metrics")

PROXY_REQUESTS = Counter(
    "crm_gateway_proxy_requests_total",
    "Requests answered by the gateway proxy, by upstream service, method and status",
    ("service", "method", "status"),
)
PROXY_DURATION = Histogram(
    "crm_gateway_proxy_request_duration_seconds",
    "Time from request start until the upstream response headers were sent",
    ("service",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PROXY_ERRORS = Counter(
    "crm_gateway_proxy_errors_total",
    "Proxied requests that failed at the gateway, by kind "
    "(timeout, unavailable, too_large, client_disconnect, aborted, not_found, bad_path)",
    ("service", "kind"),
)
AUTH_FAILURES = Counter(
    "crm_gateway_auth_failures_total",
    "Requests refused by authentication or tenant access, by reason",
    ("reason",),
)
RATE_LIMITED = Counter(
    "crm_gateway_rate_limited_total",
    "Requests answered 429, by the limit that refused them (principal, tenant, ip)",
    ("limit",),
)
RATE_LIMIT_FALLBACK = Counter(
    "crm_gateway_rate_limit_fallback_total",
    "Rate-limit decisions taken by the in-process fallback because Redis was unavailable",
)
REDIS_AVAILABLE = Gauge(
    "crm_gateway_redis_available",
    "1 while the gateway uses Redis, 0 while it serves fail-open without it",
)
IDEMPOTENCY = Counter(
    "crm_gateway_idempotency_total",
    "Requests with an Idempotency-Key, by outcome "
    "(stored, replayed, mismatch, in_progress, not_stored, bypassed)",
    ("outcome",),
)
CIRCUIT_OPEN = Gauge(
    "crm_gateway_circuit_open",
    "1 while the circuit breaker of an upstream is open (or half-open)",
    ("service",),
)


class MetricsServer:
    """``GET /metrics`` (Prometheus text format) on its own host and port.

    Started and stopped by the gateway's lifespan on the gateway's event loop. If the port
    cannot be bound the gateway keeps serving traffic (logged as
    ``gateway.metrics_unavailable``): losing metrics must not take the API down.
    """

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.host = host
        self.requested_port = port
        self.registry = registry
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}/metrics" if self.port is not None else None

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.requested_port, reuse_address=True)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            log.error(
                "gateway.metrics_unavailable",
                host=self.host,
                port=self.requested_port,
                error=describe_error(exc),
            )
            return
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("gateway.metrics_listening", host=self.host, port=self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.port = None
