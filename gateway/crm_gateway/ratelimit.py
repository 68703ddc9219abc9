"""Sliding-window rate limits in Redis, with an in-process fallback.

The algorithm is the *sliding window counter* of the ``limits`` library (its
``SlidingWindowCounterRateLimiter``): a counter for the current one-minute window and
one for the previous window; the previous count is weighted by how much of it still
overlaps the sliding minute. Keys follow ``limits``' layout (the current window key's
TTL is two windows; when less than one window is left it is renamed to the previous
key), but are named by the platform's conventions::

    crm:t:<tenant>:ratelimit:principal:<subject>:cur | :prev   (per user / client / API key)
    crm:t:<tenant>:ratelimit:tenant:cur | :prev                (per tenant)
    crm:ip:<address>:ratelimit:cur | :prev                     (anonymous routes)

All limits of one request are checked and consumed by **one** Lua script call (one
round trip, atomic: a request refused by one limit consumes none), which also returns
the counters the ``X-RateLimit-*`` headers are computed from; concurrent requests share
that call (micro-batching, see ``_Batch``). ``limits``' own Redis storage needs two
calls per limit (hit, then window stats) and prefixes keys itself. Keys of different
tenants meet in one script: a single Redis (or Sentinel) is assumed, not Cluster.

While Redis is unavailable the same algorithm runs in-process on ``limits``'
``MemoryStorage`` (per gateway replica, so the effective limit is multiplied by the
number of replicas: documented fail-open).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from crm_gateway.metrics import RATE_LIMIT_FALLBACK
from crm_gateway.redis_link import RedisLink
from crm_lib.tenancy import tenant_key

WINDOW_SECONDS = 60
_WINDOW_MS = WINDOW_SECONDS * 1000

# Several requests' checks in one call (requests are processed in order, each atomically:
# a request refused by one of its limits consumes none of them).
# ARGV: n_requests, then per request: n_limits, n_markers, has_not_before, issued_at,
#       limit_1 .. limit_n
# KEYS: per request: marker keys, [not-before key], then per limit: prev, cur
# A request whose token is revoked (crm_lib.revocation: a revoked-jti / revoked-sid marker
# exists, or the subject's not-before time is later than the token's iat) is refused
# without consuming anything (allowed = -1).
# Returns one comma-separated string (one bulk reply parses far faster than a long
# array): per request allowed, then per limit prev_count, prev_ttl_ms, cur_count,
# cur_ttl_ms (the counts after the request if it was allowed).
_SCRIPT = """
local expiry = 60000
local requests = tonumber(ARGV[1])
local a, k = 2, 1
local out = {}
for r = 1, requests do
    local n = tonumber(ARGV[a])
    local markers = tonumber(ARGV[a + 1])
    local has_not_before = tonumber(ARGV[a + 2])
    local issued_at = tonumber(ARGV[a + 3])
    a = a + 4
    local state = {}
    local allowed = 1
    for m = 1, markers do
        if redis.call('exists', KEYS[k]) == 1 then
            allowed = -1
        end
        k = k + 1
    end
    if has_not_before == 1 then
        local not_before = redis.call('get', KEYS[k])
        if not_before and (tonumber(not_before) or math.huge) > issued_at then
            allowed = -1
        end
        k = k + 1
    end
    if allowed == -1 then
        k = k + 2 * n
        a = a + n
        for i = 1, n do
            state[i] = {'', 0, 0, 0, 0}
        end
        n = 0
    end
    for i = 1, n do
        local prev_key, cur_key = KEYS[k], KEYS[k + 1]
        k = k + 2
        local limit = tonumber(ARGV[a])
        a = a + 1
        local cur_ttl = tonumber(redis.call('pttl', cur_key))
        if cur_ttl > 0 and cur_ttl < expiry then
            redis.call('rename', cur_key, prev_key)
            redis.call('set', cur_key, 0, 'PX', cur_ttl + expiry)
        end
        local prev_count = tonumber(redis.call('get', prev_key)) or 0
        local prev_ttl = tonumber(redis.call('pttl', prev_key))
        local cur_count = tonumber(redis.call('get', cur_key)) or 0
        cur_ttl = tonumber(redis.call('pttl', cur_key))
        if prev_ttl < 0 then prev_ttl = 0 end
        if cur_ttl < 0 then cur_ttl = 0 end
        if math.floor(prev_count * prev_ttl / expiry) + cur_count + 1 > limit then
            allowed = 0
        end
        state[i] = {cur_key, prev_count, prev_ttl, cur_count, cur_ttl}
    end
    if allowed == 1 then
        for i = 1, n do
            local cur_key = state[i][1]
            if redis.call('exists', cur_key) == 1 then
                redis.call('incrby', cur_key, 1)
            else
                redis.call('set', cur_key, 1, 'PX', expiry * 2)
                state[i][5] = expiry * 2
            end
            state[i][4] = state[i][4] + 1
        end
    end
    out[#out + 1] = allowed
    for i = 1, #state do
        for j = 2, 5 do
            out[#out + 1] = state[i][j]
        end
    end
end
return table.concat(out, ',')
"""
MAX_BATCH = 128


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit applied to a request: its two window keys, requests per minute, a label."""

    prev: str
    cur: str
    per_minute: int
    name: str  # "principal" | "tenant" | "ip" (metrics, debugging)

    @property
    def key(self) -> str:
        """The key base (also the identifier of the in-process fallback)."""
        return self.cur[: -len(":cur")]


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of a rate-limit check and the values of the ``X-RateLimit-*`` headers."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the window frees capacity
    retry_after: int | None = None  # set when refused
    refused_by: str | None = None
    revoked: bool = False  # the access token was revoked (no limit consumed)

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]
        if self.retry_after is not None:
            out.append((b"retry-after", str(self.retry_after).encode()))
        return out


@functools.lru_cache(maxsize=65_536)
def _window_keys(base: str) -> tuple[str, str]:
    return f"{base}:prev", f"{base}:cur"


@functools.lru_cache(maxsize=65_536)
def _principal_base(tenant_id: uuid.UUID, subject: str) -> str:
    return tenant_key(tenant_id, "ratelimit", "principal", subject)


@functools.lru_cache(maxsize=65_536)
def _tenant_base(tenant_id: uuid.UUID) -> str:
    return tenant_key(tenant_id, "ratelimit", "tenant")


def principal_limit(tenant_id: uuid.UUID, subject: str, per_minute: int) -> Limit:
    return Limit(*_window_keys(_principal_base(tenant_id, subject)), per_minute, "principal")


def tenant_limit(tenant_id: uuid.UUID, per_minute: int) -> Limit:
    return Limit(*_window_keys(_tenant_base(tenant_id)), per_minute, "tenant")


def ip_limit(address: str, per_minute: int) -> Limit:
    base = f"crm:ip:{address.replace(':', '%3A')}:ratelimit"
    return Limit(*_window_keys(base), per_minute, "ip")


def _window(
    limit: int, prev_count: int, prev_ttl: int, cur_count: int, cur_ttl: int, allowed: bool
) -> tuple[int, int, int]:
    """(remaining, reset seconds, retry-after seconds) from the raw counters (ms TTLs)."""
    weighted = math.floor(prev_count * prev_ttl / _WINDOW_MS) + cur_count
    remaining = max(0, limit - weighted)
    # next moment the weighted count drops: a previous hit ages out or the window turns
    reset_ms = math.inf
    if prev_count:
        reset_ms = prev_ttl % (_WINDOW_MS / prev_count)
    if cur_count:
        reset_ms = min(reset_ms, cur_ttl % _WINDOW_MS)
    reset = 0 if reset_ms == math.inf else math.ceil(reset_ms / 1000)
    if allowed:
        return remaining, reset, 0
    # when will one more request fit? floor(prev * (prev_ttl - t) / W) + cur + 1 <= limit
    if limit <= 0 or (cur_count + 1 > limit and cur_count == 0):
        wait_ms = float(_WINDOW_MS)
    elif cur_count + 1 <= limit:
        wait_ms = max(0.0, prev_ttl - (limit - cur_count) * _WINDOW_MS / max(prev_count, 1))
    else:  # the current window must become the previous one and decay far enough
        wait_ms = max(0, cur_ttl - _WINDOW_MS) + max(
            0.0, _WINDOW_MS - limit * _WINDOW_MS / cur_count
        )
    retry_after = max(1, math.ceil(wait_ms / 1000))
    return remaining, max(reset, retry_after), retry_after


@dataclass(frozen=True, slots=True)
class Revocation:
    """What marks a request's token as revoked (``crm_lib.revocation``)."""

    markers: Sequence[str]  # refused if any exists
    not_before: str  # refused if it holds a time later than ``issued_at``
    issued_at: float


_Pending = tuple[Sequence[Limit], Revocation | None, asyncio.Future[list[int]]]


class _Batch:
    """Coalesces the checks of concurrent requests into one script call.

    Requests that reach the limiter in the same event-loop iteration are sent together
    (up to ``MAX_BATCH``), so under load the Redis client's per-call cost is shared.
    A lone request pays one extra loop iteration, nothing else.
    """

    def __init__(self, redis: RedisLink) -> None:
        self.redis = redis
        self.script = redis.client.register_script(_SCRIPT)
        self.pending: list[_Pending] = []
        self.running: set[asyncio.Task[None]] = set()

    def submit(
        self, limits: Sequence[Limit], revocation: Revocation | None
    ) -> asyncio.Future[list[int]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        if not self.pending:
            loop.call_soon(self._flush)
        self.pending.append((limits, revocation, future))
        if len(self.pending) >= MAX_BATCH:
            self._flush()
        return future

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        if batch:
            task = asyncio.ensure_future(self._run(batch))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _run(self, batch: list[_Pending]) -> None:
        keys: list[str] = []
        args: list[int | str] = [len(batch)]
        for limits, revocation, _ in batch:
            args.append(len(limits))
            if revocation is None:
                args.extend((0, 0, 0))
            else:
                args.extend((len(revocation.markers), 1, repr(revocation.issued_at)))
                keys.extend(revocation.markers)
                keys.append(revocation.not_before)
            for item in limits:
                keys.append(item.prev)
                keys.append(item.cur)
                args.append(item.per_minute)
        try:
            async with self.redis.deadline():
                reply = await self.script(keys=keys, args=args)
            raw = [int(v) for v in reply.split(b",")]
        except BaseException as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        offset = 0
        for limits, _, future in batch:
            size = 1 + 4 * len(limits)
            if not future.done():
                future.set_result(raw[offset : offset + size])
            offset += size


class RateLimiter:
    """Checks and consumes a request's limits: Redis when up, in-process otherwise."""

    def __init__(self, redis: RedisLink) -> None:
        self.redis = redis
        self._batch = _Batch(redis)
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._items: dict[int, RateLimitItemPerMinute] = {}

    async def hit(self, limits: Sequence[Limit], revocation: Revocation | None = None) -> Decision:
        """Check and consume ``limits``; with ``revocation``, refuse (``revoked``) a
        revoked token. Without Redis the revocation check is skipped (fail-open)."""
        if self.redis.available:
            try:
                raw = await self._batch.submit(limits, revocation)
            except Exception as exc:  # never fail a request because of Redis
                self.redis.failed(exc)
            else:
                return self._decide(limits, raw)
        return await self._local(limits)

    @staticmethod
    def _decide(limits: Sequence[Limit], raw: list[int]) -> Decision:
        if raw[0] == -1:
            return Decision(False, limits[0].per_minute, 0, 0, revoked=True)
        allowed = bool(raw[0])
        best: Decision | None = None
        for i, item in enumerate(limits):
            prev_count, prev_ttl, cur_count, cur_ttl = (int(v) for v in raw[1 + 4 * i : 5 + 4 * i])
            remaining, reset, retry = _window(
                item.per_minute, prev_count, prev_ttl, cur_count, cur_ttl, allowed
            )
            refused = not allowed and remaining <= 0  # this limit had no room left
            decision = Decision(
                allowed=allowed,
                limit=item.per_minute,
                remaining=remaining,
                reset=reset,
                retry_after=retry if refused else None,
                refused_by=item.name if refused else None,
            )
            best = _more_restrictive(best, decision)
        assert best is not None
        return best

    def _item(self, per_minute: int) -> RateLimitItemPerMinute:
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        return item

    async def _local(self, limits: Sequence[Limit]) -> Decision:
        RATE_LIMIT_FALLBACK.inc()
        memory = self._memory
        allowed = True
        for item in limits:
            if not await memory.test(self._item(item.per_minute), item.key):
                allowed = False
        if allowed:
            for item in limits:
                await memory.hit(self._item(item.per_minute), item.key)
        now = time.time()
        best: Decision | None = None
        for item in limits:
            stats = await memory.get_window_stats(self._item(item.per_minute), item.key)
            reset = max(0, math.ceil(stats.reset_time - now))
            refused = not allowed and stats.remaining <= 0
            decision = Decision(
                allowed=allowed,
                limit=item.per_minute,
                remaining=stats.remaining,
                reset=max(reset, 1) if refused else reset,
                retry_after=max(reset, 1) if refused else None,
                refused_by=item.name if refused else None,
            )
            best = _more_restrictive(best, decision)
        assert best is not None
        return best


def _more_restrictive(current: Decision | None, candidate: Decision) -> Decision:
    """The window to report: a refusing one (longest wait), else the least remaining."""
    if current is None:
        return candidate
    if candidate.retry_after is not None or current.retry_after is not None:
        if current.retry_after is None:
            return candidate
        if candidate.retry_after is None:
            return current
        return candidate if candidate.retry_after > current.retry_after else current
    if candidate.remaining != current.remaining:
        return candidate if candidate.remaining < current.remaining else current
    return candidate if candidate.limit < current.limit else current
