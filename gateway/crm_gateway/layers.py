"""The default layers around the proxy and the shared state they use.

Outermost first::

    CORSLayer          preflight answered here; CORS headers on every answer
    AccessLayer        authentication, tenant access, rate limits (+ X-RateLimit-*)
    IdempotencyLayer   Idempotency-Key on POST/PATCH/DELETE
    ProxyApp           (circuit breaker per upstream inside)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from litestar.types import ASGIApp

from crm_gateway.access import AccessLayer
from crm_gateway.cors import CORSLayer
from crm_gateway.idempotency import IdempotencyLayer
from crm_gateway.identity import ApiKeyResolver, IdentityClient, TenantAccessCache
from crm_gateway.ratelimit import RateLimiter
from crm_gateway.redis_link import RedisLink
from crm_gateway.settings import GatewaySettings
from crm_gateway.upstreams import UpstreamPool
from crm_lib.auth import JWKSVerifier


class GatewayLayers:
    """Redis link, token verifier, identity caches and rate limiter of one gateway."""

    def __init__(
        self,
        settings: GatewaySettings,
        pool: UpstreamPool,
        *,
        verifier: JWKSVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.redis = RedisLink(settings)
        self.verifier = verifier or JWKSVerifier(settings, token_cache_size=16_384)
        self.identity = IdentityClient(settings, pool)
        self.tenants = TenantAccessCache(settings, self.identity)
        self.api_keys = ApiKeyResolver(settings, self.identity, self.redis, self.verifier)
        self.limiter = RateLimiter(self.redis)

    def middleware(self) -> list[Callable[[ASGIApp], ASGIApp]]:
        settings = self.settings
        return [
            lambda app: CORSLayer(app, settings),
            lambda app: AccessLayer(
                app,
                settings,
                verifier=self.verifier,
                api_keys=self.api_keys,
                tenants=self.tenants,
                limiter=self.limiter,
            ),
            lambda app: IdempotencyLayer(app, settings, self.redis),
        ]

    def start(self) -> None:
        """Fetch the JWKS in the background so the first request need not wait for it."""
        self._prefetch = asyncio.ensure_future(self.verifier.refresh())

    async def close(self) -> None:
        prefetch = getattr(self, "_prefetch", None)
        if prefetch is not None and not prefetch.done():
            prefetch.cancel()
            with contextlib.suppress(BaseException):
                await prefetch
        with contextlib.suppress(Exception):
            await self.verifier.aclose()
        await self.redis.close()
