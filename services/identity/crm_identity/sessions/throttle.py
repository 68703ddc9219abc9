"""Login throttling per account and client address: back-off, never a lock strangers control.

OWASP's guidance (Authentication Cheat Sheet, "Protect against automated attacks"):
slow guessing down per account *and* client, exponentially, instead of locking an
account anyone can lock. Keyed by the *submitted* email (sha256 of the normalised
address), so an unknown email is throttled exactly like a real one and the throttle
tells nothing about existence:

* **per account + address** ``crm:login:<h>:ip:<address>``: the first
  ``login_free_failures`` attempts pass; from then on every attempt must wait
  ``login_backoff_base_seconds * 2**(n - free)`` (capped at
  ``login_backoff_max_seconds``) after the previous one. An attempt inside the wait is
  refused *without checking the password* (the same 401 as a wrong password, plus
  ``Retry-After``). Attempts are counted when admitted (so parallel requests cannot
  race past the limit); a successful login deletes the entry. An address quiet for
  ``login_failure_memory_seconds`` after its wait starts afresh.
* **per account** ``crm:login:<h>:fails`` (all addresses, fixed window of
  ``login_account_window_seconds``): past ``login_account_ceiling`` failed attempts
  an address that has not logged in to this account successfully within
  ``login_known_address_days`` (``crm:login:<h>:known:<address>``) gets no free
  attempts: one try, then back-off. A distributed guesser is slowed; the owner is not
  locked out: from an address they used before nothing changes, from a new one the
  first attempt is always checked.

When Redis is unreachable the same rules run in-process (per replica; documented
fail-open like every other limit).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from crm_identity.settings import IdentitySettings
from crm_lib.telemetry import get_logger

log = get_logger("crm.identity.throttle")

PREFIX = "crm:login"

# KEYS: per-address hash, account counter, known-address marker.
# ARGV: now (s, float), free, base, max, ceiling, account window s, memory s.
# Returns {0, wait} when refused, {1, failures} when admitted.
_BEGIN = """
local now = tonumber(ARGV[1])
local until_ts = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if now < until_ts then
    return {0, tostring(until_ts - now)}
end
local account = tonumber(redis.call('GET', KEYS[2]) or '0')
local free = tonumber(ARGV[2])
if account >= tonumber(ARGV[5]) and redis.call('EXISTS', KEYS[3]) == 0 then
    free = 0
end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local wait = 0
if n >= free then
    wait = math.min(tonumber(ARGV[3]) * 2 ^ (n - free), tonumber(ARGV[4]))
end
redis.call('HSET', KEYS[1], 'until', tostring(now + wait))
redis.call('EXPIRE', KEYS[1], math.ceil(wait + tonumber(ARGV[7])))
if redis.call('INCR', KEYS[2]) == 1 then
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
end
return {1, tostring(n)}
"""

# A successful login: forget this address's failures, un-count the attempt, remember it.
_SUCCESS = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[1]))
return 1
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int = 0  # whole seconds, when refused


class _Local:
    """The same rules in process memory (Redis unreachable)."""

    def __init__(self) -> None:
        self.addresses: dict[tuple[str, str], tuple[int, float, float]] = {}  # n, until, expiry
        self.accounts: dict[str, tuple[int, float]] = {}  # count, window end
        self.known: dict[tuple[str, str], float] = {}  # expiry

    def begin(self, account: str, address: str, now: float, s: IdentitySettings) -> Decision:
        if len(self.addresses) + len(self.known) > 100_000:  # bound memory: drop expired
            self.addresses = {k: v for k, v in self.addresses.items() if v[2] > now}
            self.accounts = {k: v for k, v in self.accounts.items() if v[1] > now}
            self.known = {k: v for k, v in self.known.items() if v > now}
        n, until, expiry = self.addresses.get((account, address), (0, 0.0, 0.0))
        if expiry <= now:
            n, until = 0, 0.0
        if now < until:
            return Decision(False, max(1, int(until - now + 0.999)))
        count, window_end = self.accounts.get(account, (0, 0.0))
        if window_end <= now:
            count, window_end = 0, now + s.login_account_window_seconds
        free = s.login_free_failures
        if count >= s.login_account_ceiling and self.known.get((account, address), 0) <= now:
            free = 0
        n += 1
        wait = (
            min(s.login_backoff_base_seconds * 2 ** (n - free), s.login_backoff_max_seconds)
            if n >= free
            else 0.0
        )
        self.addresses[(account, address)] = (
            n,
            now + wait,
            now + wait + s.login_failure_memory_seconds,
        )
        self.accounts[account] = (count + 1, window_end)
        return Decision(True)

    def success(self, account: str, address: str, now: float, s: IdentitySettings) -> None:
        self.addresses.pop((account, address), None)
        count, window_end = self.accounts.get(account, (0, 0.0))
        if count > 0:
            self.accounts[account] = (count - 1, window_end)
        self.known[(account, address)] = now + s.login_known_address_days * 86400


def account_hash(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


class LoginThrottle:
    def __init__(self, settings: IdentitySettings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self._begin = redis.register_script(_BEGIN)
        self._success = redis.register_script(_SUCCESS)
        self.local = _Local()

    @staticmethod
    def keys(email: str, address: str) -> list[str]:
        h = account_hash(email)
        return [
            f"{PREFIX}:{h}:ip:{address}",
            f"{PREFIX}:{h}:fails",
            f"{PREFIX}:{h}:known:{address}",
        ]

    async def begin(self, email: str, address: str) -> Decision:
        """Admit (and count) a login attempt, or refuse it with the seconds to wait."""
        s = self.settings
        now = time.time()
        try:
            allowed, value = await self._begin(
                keys=self.keys(email, address),
                args=[
                    repr(now),
                    s.login_free_failures,
                    s.login_backoff_base_seconds,
                    s.login_backoff_max_seconds,
                    s.login_account_ceiling,
                    s.login_account_window_seconds,
                    s.login_failure_memory_seconds,
                ],
            )
        except Exception as exc:  # documented fail-open: Redis down must not stop logins
            log.warning("login.throttle_local", error=type(exc).__name__)
            return self.local.begin(account_hash(email), address, now, s)
        if int(allowed):
            if int(value) == s.login_free_failures:
                log.warning("login.backoff_started", account=account_hash(email)[:12])
            return Decision(True)
        return Decision(False, max(1, int(float(value) + 0.999)))

    async def success(self, email: str, address: str) -> None:
        try:
            await self._success(
                keys=self.keys(email, address),
                args=[self.settings.login_known_address_days * 86400],
            )
        except Exception as exc:
            log.warning("login.throttle_local", error=type(exc).__name__)
            self.local.success(account_hash(email), address, time.time(), self.settings)
