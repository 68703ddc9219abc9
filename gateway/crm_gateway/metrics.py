"""Prometheus metrics of proxied requests.

Registered once per process in the default registry, which the gateway's
``/metrics`` endpoint (crm_lib's PrometheusController) exposes next to the
Litestar metrics of the gateway's own endpoints.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
