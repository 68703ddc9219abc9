"""What a service is made of and how its processes start.

A service declares a ``ServiceDefinition`` (name, database schema, HTTP
handlers, event subscriptions); ``build_app`` turns it into the web process and
``run_worker`` into the worker process (outbox relay + consumers). Both share
one ``ServiceRuntime``: the settings, the database pool and the NATS link.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from nats.aio.client import Client as NatsClient
from redis.asyncio import Redis
from sqlalchemy import text

from crm_lib.auth import (
    ACCESS_CHECK_STATE_KEY,
    JWKSVerifier,
    TokenVerifier,
    install_auth,
    principal_dependency,
)
from crm_lib.events import EventWorker, OutboxRelay, Subscription, connect_nats, ensure_streams
from crm_lib.exports import export_subscription
from crm_lib.http import create_app
from crm_lib.migrations import ServiceSchema, upgrade_platform
from crm_lib.provisioning import lifecycle_subscription
from crm_lib.revocation import AccessCheck
from crm_lib.revocation import commit_hook as revocation_commit_hook
from crm_lib.settings import PlatformSettings, settings_for
from crm_lib.telemetry import get_logger, setup_logging, setup_tracing
from crm_lib.tenancy import Database, ensure_database

log = get_logger("crm.service")


class ServiceRuntime:
    """Process-wide resources of one service."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self.db = Database(settings)
        self.nc: NatsClient | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._redis: Redis | None = None
        # Revocation markers and tenant statuses recorded in a transaction reach Redis
        # once it commits (crm_lib.revocation).
        self.db.commit_hooks.append(revocation_commit_hook(lambda: self.redis))
        # Service-specific singletons built on this runtime (e.g. identity's key store).
        self.extras: dict[str, Any] = {}

    @property
    def redis(self) -> Redis:
        """A Redis client with short timeouts: callers must tolerate Redis being away."""
        if self._redis is None:
            self._redis = Redis.from_url(
                self.settings.redis_url,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                health_check_interval=10,
            )
        return self._redis

    async def _connect(self) -> None:
        self.nc = await connect_nats(self.settings, wait=True)

    def start_nats(self) -> None:
        """Connect to NATS in the background: a web process starts even if NATS is away."""
        if self._connect_task is None:
            self._connect_task = asyncio.create_task(self._connect())

    async def nats(self) -> NatsClient:
        if self.nc is None:
            self.start_nats()
            assert self._connect_task is not None
            await self._connect_task
        assert self.nc is not None
        return self.nc

    async def db_ready(self) -> bool:
        async with self.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def nats_ready(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def close(self) -> None:
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            with contextlib.suppress(BaseException):
                await self._connect_task
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        await self.db.dispose()


@dataclass
class ServiceDefinition:
    name: str
    schema: ServiceSchema
    route_handlers: Sequence[Any] = ()
    subscriptions: Callable[[ServiceRuntime], list[Subscription]] = field(
        default=lambda _runtime: []
    )
    settings_class: type[PlatformSettings] | None = None
    # How the web process verifies access tokens (default: identity's JWKS over HTTP).
    verifier_factory: Callable[[ServiceRuntime], TokenVerifier] | None = None
    # Periodic jobs of the worker process (e.g. identity's billing sweeper): each runs
    # until the stop event is set.
    background: Callable[[ServiceRuntime], list[Callable[[asyncio.Event], Awaitable[None]]]] = (
        field(default=lambda _runtime: [])
    )

    def settings(self, **overrides: object) -> PlatformSettings:
        return settings_for(self.name, self.settings_class, **overrides)  # type: ignore[arg-type]

    def all_subscriptions(self, runtime: ServiceRuntime) -> list[Subscription]:
        return [
            lifecycle_subscription(self.name, self.schema),
            export_subscription(self.name, self.schema.tenant_metadata, self.schema.export_exclude),
            *self.subscriptions(runtime),
        ]


async def prepare_database(definition: ServiceDefinition, settings: PlatformSettings) -> None:
    """Create the service database and bring the platform tracks to head."""
    await ensure_database(settings)
    db = Database(settings, pool_size=1, max_overflow=0)
    try:
        await upgrade_platform(db, definition.schema)
    finally:
        await db.dispose()


def build_app(
    definition: ServiceDefinition,
    settings: PlatformSettings | None = None,
    *,
    runtime: ServiceRuntime | None = None,
    token_verifier: TokenVerifier | None = None,
) -> Litestar:
    """The service's web app.

    Handlers get ``principal`` (``crm_lib.auth.principal_dependency``) verified by
    ``token_verifier``, by default a ``JWKSVerifier`` fetching identity's JWKS; identity
    passes a verifier over its own keys.
    """
    settings = settings or definition.settings()
    setup_logging(settings)
    setup_tracing(settings)
    owned = runtime is None
    rt = runtime or ServiceRuntime(settings)
    if token_verifier is not None:
        verifier = token_verifier
    elif definition.verifier_factory is not None:
        verifier = definition.verifier_factory(rt)
    else:
        verifier = JWKSVerifier(settings)

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        rt.start_nats()
        try:
            yield
        finally:
            close = getattr(verifier, "aclose", None)
            if close is not None:
                await close()
            if owned:
                await rt.close()

    state: dict[str, Any] = {
        "runtime": rt,
        "settings": settings,
        ACCESS_CHECK_STATE_KEY: AccessCheck(rt.redis),
    }
    install_auth(state, verifier)

    return create_app(
        service=definition.name,
        route_handlers=definition.route_handlers,
        readiness={"database": rt.db_ready, "nats": rt.nats_ready},
        lifespan=[lifespan],
        dependencies={
            "runtime": Provide(lambda: rt, sync_to_thread=False),
            "principal": principal_dependency(),
        },
        state=state,
    )


async def run_worker(
    definition: ServiceDefinition,
    stop: asyncio.Event,
    settings: PlatformSettings | None = None,
    *,
    runtime: ServiceRuntime | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """The worker process: relay the outbox and run the consumers until ``stop``."""
    settings = settings or definition.settings()
    rt = runtime or ServiceRuntime(settings)
    try:
        nc = await rt.nats()
        js = nc.jetstream()
        await ensure_streams(js)
        relay = OutboxRelay(rt.db, js, settings)
        worker = EventWorker(rt.db, js, settings, definition.all_subscriptions(rt))
        await worker.ensure_consumers()
        if ready is not None:
            ready.set()
        log.info("worker.started", service=definition.name)
        await asyncio.gather(
            relay.run(stop), worker.run(stop), *(job(stop) for job in definition.background(rt))
        )
    finally:
        if runtime is None:
            await rt.close()
