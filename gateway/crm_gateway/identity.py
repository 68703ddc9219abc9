"""What the gateway asks identity: API-key resolution and tenant access (docs/auth.md).

Both calls go to identity's internal endpoints over the pooled identity session with
``Authorization: Bearer <CRM_INTERNAL_TOKEN>``:

* ``POST /internal/v1/api-keys/resolve {"key"}`` exchanges an API key for a short-lived
  access token. The answer is cached in Redis under ``crm:apikey:<sha256(key)>`` for at
  most ``api_key_cache_seconds`` and never past the token's expiry (minus a margin);
  identity deletes that entry when the key is revoked. The key itself is never stored.
* ``GET /internal/v1/tenants/{id}/access`` answers status, plan and rate limits; cached
  in-process for ``tenant_access_cache_seconds``.

Concurrent misses for the same key or tenant share one call (single flight).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import msgspec

from crm_gateway.redis_link import REDIS_ERRORS, RedisLink
from crm_gateway.settings import GatewaySettings
from crm_gateway.upstreams import UpstreamPool
from crm_lib.auth import JWKSVerifier, Principal, invalid_token
from crm_lib.http import ProblemError
from crm_lib.telemetry import describe_error, get_logger

log = get_logger("crm.gateway.identity")

API_KEY_PREFIXES = ("crm_live_", "crm_test_")
_API_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_MAX_API_KEY_LENGTH = 256
_MAX_CACHE_ENTRIES = 100_000

T = TypeVar("T")


class TenantLimits(msgspec.Struct):
    requests_per_minute: int | None = None
    tenant_requests_per_minute: int | None = None


class TenantAccess(msgspec.Struct):
    tenant_id: str
    status: str
    plan: str | None = None
    limits: TenantLimits = msgspec.field(default_factory=TenantLimits)


class ResolvedKey(msgspec.Struct):
    tenant_id: str
    key_id: str
    access_token: str
    expires_in: int
    scopes: list[str] = msgspec.field(default_factory=list)


class IdentityUnavailable(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(503, detail, headers={"Retry-After": "1"})


def is_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIXES)


class _SingleFlight:
    """Concurrent calls with the same key share one running coroutine."""

    def __init__(self) -> None:
        self._running: dict[Any, asyncio.Future[Any]] = {}

    async def run(self, key: Any, make: Callable[[], Awaitable[T]]) -> T:
        future = self._running.get(key)
        if future is None:
            future = asyncio.ensure_future(make())
            self._running[key] = future
            future.add_done_callback(lambda f: self._done(key, f))
        return await asyncio.shield(future)

    def _done(self, key: Any, future: asyncio.Future[Any]) -> None:
        self._running.pop(key, None)
        if not future.cancelled():
            future.exception()  # retrieved even if every waiter went away


class IdentityClient:
    """Calls to identity's internal API over the gateway's pooled identity session."""

    def __init__(self, settings: GatewaySettings, pool: UpstreamPool) -> None:
        self.settings = settings
        self.pool = pool
        self.base = pool.urls["identity"]
        token = settings.internal_token.get_secret_value() if settings.internal_token else None
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        if not token:
            log.warning("gateway.no_internal_token", hint="set CRM_INTERNAL_TOKEN")
        self.timeout = aiohttp.ClientTimeout(total=settings.internal_timeout_seconds)

    def _session(self) -> aiohttp.ClientSession:
        session = self.pool.sessions.get("identity")
        if session is None:
            raise IdentityUnavailable("The gateway is not started.")
        return session

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        headers = {**self._auth, "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = msgspec.json.encode(body)
        try:
            async with self._session().request(
                method,
                self.base + path,
                headers=headers,
                data=data,
                timeout=self.timeout,
                allow_redirects=False,
            ) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("gateway.identity_unreachable", path=path, error=describe_error(exc))
            raise IdentityUnavailable("The identity service is unavailable.") from exc


# Statuses kept only briefly: provisioning turns active within a second, and a suspended
# (or pending-deletion) tenant that pays is writable again at once.
_TRANSIENT = frozenset({"provisioning", "provisioning_failed", "suspended", "pending_deletion"})


class TenantAccessCache:
    """Tenant status and limits, cached in-process; ``None`` for an unknown tenant."""

    def __init__(self, settings: GatewaySettings, identity: IdentityClient) -> None:
        self.identity = identity
        self.ttl = settings.tenant_access_cache_seconds
        # A tenant that is still provisioning turns active within a second or so: its
        # answer is kept only briefly, so a new sign-up is not held back by the cache.
        self.transient_ttl = settings.tenant_access_transient_cache_seconds
        self.stale = settings.tenant_access_stale_seconds
        self._entries: dict[uuid.UUID, tuple[TenantAccess | None, float]] = {}
        self._flight = _SingleFlight()
        #: identity calls made (observability and tests)
        self.fetches = 0

    def forget(self, tenant_id: uuid.UUID | None = None) -> None:
        if tenant_id is None:
            self._entries.clear()
        else:
            self._entries.pop(tenant_id, None)

    async def get(self, tenant_id: uuid.UUID) -> TenantAccess | None:
        entry = self._entries.get(tenant_id)
        if entry is not None:
            access = entry[0]
            ttl = self.transient_ttl if access is None or access.status in _TRANSIENT else self.ttl
            if time.monotonic() - entry[1] < ttl:
                return access
        return await self._flight.run(tenant_id, lambda: self._fetch(tenant_id, entry))

    async def _fetch(
        self, tenant_id: uuid.UUID, previous: tuple[TenantAccess | None, float] | None
    ) -> TenantAccess | None:
        self.fetches += 1
        try:
            status, body = await self.identity.request(
                "GET", f"/internal/v1/tenants/{tenant_id}/access"
            )
            if status == 404:
                access: TenantAccess | None = None
            elif status == 200:
                access = msgspec.json.decode(body, type=TenantAccess)
            else:
                log.warning("gateway.tenant_access_failed", tenant_id=str(tenant_id), status=status)
                raise IdentityUnavailable("The tenant's access could not be checked.")
        except (IdentityUnavailable, msgspec.DecodeError, msgspec.ValidationError) as exc:
            if previous is not None and time.monotonic() - previous[1] < self.stale:
                return previous[0]  # identity is away: keep the last answer for a while
            if isinstance(exc, IdentityUnavailable):
                raise
            raise IdentityUnavailable("The tenant's access could not be checked.") from exc
        if len(self._entries) >= _MAX_CACHE_ENTRIES:
            self._entries.clear()
        self._entries[tenant_id] = (access, time.monotonic())
        return access


class ApiKeyResolver:
    """API key -> (principal, minted access token), through the Redis cache."""

    def __init__(
        self,
        settings: GatewaySettings,
        identity: IdentityClient,
        redis: RedisLink,
        verifier: JWKSVerifier,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.redis = redis
        self.verifier = verifier
        self._flight = _SingleFlight()
        # used only while Redis is down: digest -> (answer, valid until, monotonic)
        self._local: dict[str, tuple[ResolvedKey, float]] = {}
        #: identity calls made (observability and tests)
        self.resolves = 0

    @staticmethod
    def cache_key(api_key: str) -> str:
        return f"crm:apikey:{hashlib.sha256(api_key.encode()).hexdigest()}"

    async def resolve(self, api_key: str) -> tuple[Principal, str]:
        if len(api_key) > _MAX_API_KEY_LENGTH or not _API_KEY_CHARS.issuperset(api_key):
            raise invalid_token("The API key is malformed.")
        cache_key = self.cache_key(api_key)
        answer = await self._cached(cache_key)
        if answer is not None:
            try:
                return await self._principal(answer), answer.access_token
            except ProblemError:
                pass  # e.g. the signing key was retired: resolve again
        answer = await self._flight.run(cache_key, lambda: self._resolve(api_key, cache_key))
        return await self._principal(answer), answer.access_token

    async def _cached(self, cache_key: str) -> ResolvedKey | None:
        if not self.redis.available:
            local = self._local.get(cache_key)
            if local is not None and time.monotonic() < local[1]:
                return local[0]
            return None
        try:
            async with self.redis.deadline():
                raw = await self.redis.client.get(cache_key)
        except REDIS_ERRORS as exc:
            self.redis.failed(exc)
            return None
        if raw is None:
            return None
        try:
            return msgspec.json.decode(raw, type=ResolvedKey)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def _resolve(self, api_key: str, cache_key: str) -> ResolvedKey:
        self.resolves += 1
        status, body = await self.identity.request(
            "POST", "/internal/v1/api-keys/resolve", {"key": api_key}
        )
        if status in (400, 401, 403, 404, 422):
            raise invalid_token("The API key is invalid, revoked or expired.")
        if status != 200:
            log.warning("gateway.api_key_resolve_failed", status=status)
            raise IdentityUnavailable("API keys cannot be checked right now.")
        try:
            answer = msgspec.json.decode(body, type=ResolvedKey)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise IdentityUnavailable("API keys cannot be checked right now.") from exc
        ttl = min(
            self.settings.api_key_cache_seconds,
            answer.expires_in - self.settings.api_key_token_margin_seconds,
        )
        if ttl > 0:
            stored = msgspec.json.encode(answer)
            if self.redis.available:
                try:
                    async with self.redis.deadline():
                        await self.redis.client.set(cache_key, stored, ex=ttl)
                except REDIS_ERRORS as exc:
                    self.redis.failed(exc)
            if not self.redis.available:
                if len(self._local) >= _MAX_CACHE_ENTRIES:
                    self._local.clear()
                local_ttl = min(ttl, self.settings.api_key_local_cache_seconds)
                self._local[cache_key] = (answer, time.monotonic() + local_ttl)
        return answer

    async def _principal(self, answer: ResolvedKey) -> Principal:
        principal = await self.verifier.verify(answer.access_token)
        if principal.kind != "api_key" or str(principal.tenant_id) != answer.tenant_id:
            raise invalid_token("The API key resolved to an inconsistent token.")
        return principal
