"""One pooled aiohttp session per upstream service, plus the readiness probe.

Sessions are opened on lifespan startup (inside the server's event loop) and closed
on shutdown. They are configured for proxying: no cookie jar (a shared jar would
leak one client's cookies to the next), no automatic ``Accept``/``Accept-Encoding``/
``User-Agent``/``Content-Type`` headers, no decompression (bytes pass through
unchanged with their ``Content-Encoding``), no redirects followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

import aiohttp

from crm_gateway.settings import GatewaySettings
from crm_lib.telemetry import describe_error, get_logger

log = get_logger("crm.gateway.upstreams")

SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class UpstreamPool:
    """Base URLs and HTTP sessions of the upstream services."""

    def __init__(self, settings: GatewaySettings, urls: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.urls: dict[str, str] = dict(urls or settings.upstream_urls)
        self.sessions: dict[str, aiohttp.ClientSession] = {}
        self._ready_at = 0.0
        self._ready: dict[str, bool] = {}
        self._ready_task: asyncio.Task[dict[str, bool]] | None = None

    @property
    def started(self) -> bool:
        return bool(self.sessions)

    async def start(self) -> None:
        if self.sessions:
            return
        for name in self.urls:
            connector = aiohttp.TCPConnector(
                limit=self.settings.upstream_pool_size,
                limit_per_host=0,
                keepalive_timeout=self.settings.upstream_keepalive_seconds,
                ttl_dns_cache=30,
            )
            self.sessions[name] = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=SKIP_AUTO_HEADERS,
                auto_decompress=False,
                raise_for_status=False,
                trust_env=False,
                requote_redirect_url=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self.settings.upstream_connect_timeout_seconds,
                    sock_read=self.settings.upstream_read_timeout_seconds,
                ),
            )

    async def close(self) -> None:
        if self._ready_task is not None and not self._ready_task.done():
            self._ready_task.cancel()
            with contextlib.suppress(BaseException):
                await self._ready_task
        sessions, self.sessions = self.sessions, {}
        for session in sessions.values():
            await session.close()

    # -- readiness ---------------------------------------------------------------

    async def _probe(self, name: str) -> bool:
        session = self.sessions.get(name)
        if session is None:
            return False
        timeout = aiohttp.ClientTimeout(total=self.settings.ready_timeout_seconds)
        try:
            async with session.get(
                f"{self.urls[name]}/health/ready", timeout=timeout, allow_redirects=False
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("gateway.upstream_not_ready", upstream=name, error=describe_error(exc))
            return False

    async def _probe_all(self) -> dict[str, bool]:
        names = list(self.urls)
        results = await asyncio.gather(*(self._probe(n) for n in names))
        self._ready = dict(zip(names, results, strict=True))
        self._ready_at = time.monotonic()
        return self._ready

    async def readiness(self) -> dict[str, bool]:
        """Every upstream's readiness, probed concurrently, cached ``ready_cache_seconds``.

        Concurrent callers share one probe round.
        """
        if self._ready and time.monotonic() - self._ready_at < self.settings.ready_cache_seconds:
            return self._ready
        if self._ready_task is None or self._ready_task.done():
            self._ready_task = asyncio.ensure_future(self._probe_all())
        return await asyncio.shield(self._ready_task)
