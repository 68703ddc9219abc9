"""Prometheus metrics of proxied requests.

Registered once per process in the default registry, which the gateway's
``/metrics`` endpoint (crm_lib's PrometheusController) exposes next to the
Litestar metrics of the gateway's own endpoints.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
