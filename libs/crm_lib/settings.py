"""Typed settings read from the environment (prefix ``CRM_``).

Every process builds exactly one settings object for its service. The database
URL names a *server*; each service owns its own database on it
(``CRM_DATABASE_NAME``, default ``crm_<service>``), so services can be moved to
separate clusters by pointing their ``CRM_DATABASE_URL`` elsewhere.
"""

from __future__ import annotations

from functools import cached_property

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

SERVICE_NAMES: tuple[str, ...] = ("identity", "contacts", "sales", "marketing", "support")

# Default local ports of the web processes (gateway is 8000).
SERVICE_PORTS: dict[str, int] = {
    "gateway": 8000,
    "identity": 8001,
    "contacts": 8002,
    "sales": 8003,
    "marketing": 8004,
    "support": 8005,
}


class PlatformSettings(BaseSettings):
    """Settings shared by every service; services subclass to add their own."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    service_name: str = "platform"
    environment: str = "development"
    log_level: str = "INFO"
    log_json: bool = True

    database_url: str = "postgresql://postgres@127.0.0.1:55432/postgres"
    database_name: str | None = None
    # A pool large enough for a web process's concurrency: overflow connections are
    # closed on return, and reconnecting per request costs more than an idle connection.
    database_pool_size: int = 20
    database_max_overflow: int = 10
    # Backends cache catalogue entries of every schema they touch; recycle them.
    database_pool_recycle_seconds: int = 1200
    database_statement_timeout_ms: int = 30_000

    nats_url: str = "nats://127.0.0.1:54222"
    # The process's NATS user (one per service, publish rights limited to its own subjects;
    # docs/events.md). Unset: no credentials, or whatever user:password CRM_NATS_URL carries.
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    # A password goes into the URL: redis://:<password>@host:port/0.
    redis_url: str = "redis://127.0.0.1:56379/0"

    otlp_endpoint: str | None = None

    # Migration runner
    migrate_concurrency: int = 8
    migrate_lock_timeout_ms: int = 5_000

    # Events
    outbox_batch_size: int = 1000
    outbox_poll_interval_seconds: float = 1.0
    consumer_max_deliver: int = 5
    consumer_ack_wait_seconds: float = 30.0
    consumer_backoff_seconds: tuple[float, ...] = (0.2, 1.0, 5.0, 15.0)

    # Authentication (docs/auth.md). Every process verifies access tokens against the
    # JWKS identity serves at {identity_url}/.well-known/jwks.json.
    identity_url: str = "http://127.0.0.1:8001"
    jwt_issuer: str = "crm-identity"
    jwt_audience: str = "crm-api"
    # How long a fetched JWKS is used before it is refreshed (in the background).
    jwks_cache_seconds: float = 300.0
    # Bearer token of the platform's internal endpoints (/internal/v1/...).
    internal_token: SecretStr | None = None

    @property
    def effective_database_name(self) -> str:
        return self.database_name or f"crm_{self.service_name}"

    @cached_property
    def async_database_url(self) -> str:
        """SQLAlchemy asyncpg URL of this service's own database."""
        url = make_url(self.database_url).set(drivername="postgresql+asyncpg")
        return url.set(database=self.effective_database_name).render_as_string(hide_password=False)

    @cached_property
    def server_database_url(self) -> str:
        """asyncpg URL of the maintenance database (for CREATE DATABASE)."""
        url = make_url(self.database_url).set(drivername="postgresql+asyncpg")
        return url.render_as_string(hide_password=False)


def service_database_overrides(service_name: str) -> dict[str, str]:
    """Per-service database location from ``CRM_<SERVICE>_DATABASE_URL``/``_NAME``.

    One process that acts for several services (``crm migrate --all``, the
    Helm migrations Job) reaches each service's database this way; a service
    process normally just gets ``CRM_DATABASE_URL``.
    """
    import os

    prefix = f"CRM_{service_name.upper()}_"
    found: dict[str, str] = {}
    if url := os.environ.get(f"{prefix}DATABASE_URL"):
        found["database_url"] = url
    if name := os.environ.get(f"{prefix}DATABASE_NAME"):
        found["database_name"] = name
    return found


def settings_for(
    service_name: str, settings_cls: type[PlatformSettings] | None = None, **overrides: object
) -> PlatformSettings:
    """Settings for one service: environment, then per-service database vars, then overrides."""
    values: dict[str, object] = {"service_name": service_name}
    values.update(service_database_overrides(service_name))
    values.update(overrides)
    return (settings_cls or PlatformSettings)(**values)  # type: ignore[arg-type]
