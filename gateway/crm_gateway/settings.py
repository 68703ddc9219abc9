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
    # Per-route body limits keyed like route_timeouts (first path segment after /api/v1/):
    # CSV uploads are bigger than API calls (the contacts service caps them itself).
    route_max_body_bytes: dict[str, int] = {"imports": 100 * 1024 * 1024}

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

    # -- authentication and tenant access (docs/auth.md) ----------------------------------
    # The internal token (CRM_INTERNAL_TOKEN, PlatformSettings.internal_token) authorises
    # the calls to identity's /internal/v1/api-keys/resolve and /internal/v1/tenants/*/access.
    internal_timeout_seconds: float = 2.0
    # API-key answers are cached in Redis (crm:apikey:<sha256>) at most this long and never
    # past the minted token's expiry minus ``api_key_token_margin_seconds``.
    api_key_cache_seconds: int = 60
    api_key_token_margin_seconds: int = 30
    # While Redis is down, API-key answers are cached in-process this long instead.
    api_key_local_cache_seconds: float = 5.0
    # Tenant access answers (status, plan, limits) are cached in-process this long; if
    # identity cannot be reached a cached answer up to ``stale`` seconds old is used.
    tenant_access_cache_seconds: float = 5.0
    # ...and for a tenant still provisioning (or not known yet), so sign-ups start at once.
    tenant_access_transient_cache_seconds: float = 0.25
    tenant_access_stale_seconds: float = 300.0
    # GET/HEAD paths a tenant may use while still ``provisioning`` (to poll its status).
    provisioning_readable_paths: list[str] = ["/api/v1/tenant"]

    # -- rate limits (per minute, sliding window) --------------------------------------
    # Per principal and per tenant the limits come from identity's access answer; these
    # are used when the answer carries none.
    default_requests_per_minute: int = 600
    default_tenant_requests_per_minute: int = 3000
    # Anonymous routes (sign-up, login, ...) and failed authentications, per client IP.
    anonymous_requests_per_minute: int = 120

    # -- Redis (rate limits, idempotency, API-key cache) --------------------------------
    # Every Redis call is bounded by this socket timeout; after a failure the gateway
    # serves without Redis (local rate limits, no idempotency) and probes Redis again
    # every ``redis_retry_seconds`` until it answers.
    redis_socket_timeout_seconds: float = 0.25
    redis_retry_seconds: float = 2.0

    # -- Idempotency-Key ------------------------------------------------------------------
    idempotency_ttl_seconds: int = 24 * 3600
    # How long an in-flight key stays locked if the gateway dies mid-request.
    idempotency_lock_seconds: int = 360
    # Larger responses are not stored (a replay then answers 409).
    idempotency_max_response_bytes: int = 1024 * 1024

    # -- circuit breaker per upstream -----------------------------------------------------
    # Consecutive connect errors / timeouts / 502-503-504 answers that open the circuit,
    # and how long it stays open before one probe request is let through.
    circuit_failure_threshold: int = 5
    circuit_cooldown_seconds: float = 10.0

    # -- metrics ----------------------------------------------------------------------------
    # Prometheus metrics are served on their own listener, never on the public port
    # (where /metrics answers 404). ``metrics_port`` None disables it, 0 picks a free port.
    # In Kubernetes set CRM_METRICS_HOST=0.0.0.0 (the chart does) and scrape the pod's
    # ``metrics`` port; keep that port out of the Ingress.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9464

    # -- CORS --------------------------------------------------------------------------------
    # Origins allowed to call the API from a browser ("*" = any; [] disables CORS).
    # Credentials (cookies) are never allowed: the API authenticates with bearer tokens.
    cors_allow_origins: list[str] = ["*"]
    cors_max_age_seconds: int = 600

    @field_validator("identity_url", "contacts_url", "sales_url", "marketing_url", "support_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("upstream URL must start with http:// or https://")
        return value

    def body_limit(self, path: str) -> int:
        """The request body limit of a public path."""
        segment = (
            path.removeprefix("/api/v1/").split("/", 1)[0] if path.startswith("/api/v1/") else ""
        )
        return self.route_max_body_bytes.get(segment, self.max_body_bytes)

    @property
    def upstream_urls(self) -> dict[str, str]:
        """Service name -> base URL, in ``SERVICE_NAMES`` order."""
        return {name: getattr(self, f"{name}_url") for name in SERVICE_NAMES}
