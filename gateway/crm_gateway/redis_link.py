"""The gateway's one Redis client, and what happens when Redis is away.

Rate limits, idempotency records and the API-key cache live in Redis, but Redis is not
allowed to take the gateway down (documented fail-open):

* every call is bounded by a short timeout (``redis_socket_timeout_seconds``, applied
  with ``asyncio.timeout`` around the call: redis-py's own socket timeout costs a task
  per command on Python 3.11) and never retried inline;
* the first connection failure marks Redis *down* (logged once): callers then skip Redis
  entirely (local rate limits, no idempotency, API keys resolved at identity) so no
  request waits on a dead server;
* a single background task pings Redis every ``redis_retry_seconds``; when it answers,
  the pooled connections are dropped and Redis is *up* again (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from crm_gateway.metrics import REDIS_AVAILABLE
from crm_gateway.settings import GatewaySettings
from crm_lib.telemetry import describe_error, get_logger

log = get_logger("crm.gateway.redis")

#: Everything a Redis call may raise when the server is away or misbehaves.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
_CONNECTIVITY: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    asyncio.TimeoutError,
)


class RedisLink:
    """A Redis client plus an up/down state shared by all gateway layers."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.timeout = settings.redis_socket_timeout_seconds
        self.retry_seconds = settings.redis_retry_seconds
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            settings.redis_url,
            socket_timeout=None,  # bounded by deadline() around each call instead
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self.available = True
        self._probe: asyncio.Task[None] | None = None
        REDIS_AVAILABLE.set(1)

    def deadline(self) -> asyncio.Timeout:
        """``async with redis.deadline(): await redis.client...``: bounds one call."""
        return asyncio.timeout(self.timeout)

    def failed(self, exc: BaseException) -> None:
        """Report a failed call; connectivity failures switch to fail-open mode."""
        if not isinstance(exc, _CONNECTIVITY):
            log.warning("gateway.redis_error", error=describe_error(exc))
            return
        if self.available:
            self.available = False
            REDIS_AVAILABLE.set(0)
            log.error(
                "gateway.redis_unavailable",
                error=describe_error(exc),
                mode="fail-open: local rate limits, no idempotency, no API-key cache",
            )
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        while True:
            await asyncio.sleep(self.retry_seconds)
            try:
                # drop connections to the old server before trying a fresh one
                await self.client.connection_pool.disconnect()
                async with self.deadline():
                    await self.client.ping()
            except REDIS_ERRORS:
                continue
            self.available = True
            REDIS_AVAILABLE.set(1)
            log.warning("gateway.redis_recovered")
            return

    async def close(self) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
            with contextlib.suppress(BaseException):
                await self._probe
        with contextlib.suppress(Exception):
            await self.client.aclose()
