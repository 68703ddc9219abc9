"""Gateway settings (environment prefix ``CRM_``).

Upstream base URLs default to the local ports in ``SERVICE_PORTS``; in Kubernetes
they point at the service DNS names (``CRM_CONTACTS_URL=http://contacts:8000``).
"""

from __future__ import annotations

from pydantic import BaseModel, field_validator

from crm_lib.settings import SERVICE_NAMES, SERVICE_PORTS, PlatformSettings


def _local(service: str) -> str:
    return f"http://127.0.0.1:{SERVICE_PORTS[service]}"


class RouteTimeout(BaseModel):
    """Override of the upstream timeouts for one route (``None`` = keep the default)."""

    connect: float | None = None
    read: float | None = None


class GatewaySettings(PlatformSettings):
    service_name: str = "gateway"

    # Upstreams (CRM_IDENTITY_URL, CRM_CONTACTS_URL, ...). No trailing slash needed.
    identity_url: str = _local("identity")
    contacts_url: str = _local("contacts")
    sales_url: str = _local("sales")
    marketing_url: str = _local("marketing")
    support_url: str = _local("support")

    # Timeouts of a proxied call, in seconds. ``connect`` bounds opening a TCP connection,
    # ``read`` bounds every wait for upstream bytes (headers and each body chunk), so a long
    # download that keeps flowing is never cut. ``pool_wait`` bounds waiting for a free
    # pooled connection when all ``upstream_pool_size`` connections are busy.
    upstream_connect_timeout_seconds: float = 2.0
    upstream_read_timeout_seconds: float = 30.0
    upstream_pool_wait_seconds: float = 10.0
    # Per-route overrides keyed by the first path segment after /api/v1/ (e.g. "exports")
    # or by service name ("sales"); a segment entry wins over a service entry.
    # Env: CRM_ROUTE_TIMEOUTS='{"reports": {"read": 120}, "support": {"connect": 1}}'
    route_timeouts: dict[str, RouteTimeout] = {
        "imports": RouteTimeout(read=300.0),
        "exports": RouteTimeout(read=300.0),
    }

    # Largest request body accepted (Content-Length or counted while streaming) -> 413.
    max_body_bytes: int = 10 * 1024 * 1024

    # Connection pool per upstream (one aiohttp session each).
    upstream_pool_size: int = 256
    # Keep below the upstreams' own idle keep-alive (uvicorn's default is 5 s) so the
    # gateway never reuses a connection the upstream is about to close.
    upstream_keepalive_seconds: float = 4.0

    # /health/ready probes every upstream's /health/ready concurrently.
    ready_timeout_seconds: float = 1.0
    ready_cache_seconds: float = 1.0

    # /api/v1/openapi.json merges every upstream's /openapi/openapi.json.
    openapi_fetch_timeout_seconds: float = 3.0
    openapi_cache_seconds: float = 30.0
    # Incomplete documents (some upstream missing) are cached only briefly.
    openapi_partial_cache_seconds: float = 2.0

    @field_validator("identity_url", "contacts_url", "sales_url", "marketing_url", "support_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("upstream URL must start with http:// or https://")
        return value

    @property
    def upstream_urls(self) -> dict[str, str]:
        """Service name -> base URL, in ``SERVICE_NAMES`` order."""
        return {name: getattr(self, f"{name}_url") for name in SERVICE_NAMES}
