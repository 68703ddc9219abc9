"""Access that ends before the token does: revocation markers and the tenant's status.

Access tokens are self-contained and live ``CRM_ACCESS_TOKEN_TTL_SECONDS`` (15 min). What
a token says (roles, scopes, the tenant's standing) can stop being true sooner; identity
then writes one of these Redis keys, and the gateway *and* every service check them on
every request (``docs/auth.md`` "Revocation"):

* ``crm:t:<tid>:revoked-jti:<jti>``: RFC 7009 revocation of one token; refused if it exists.
* ``crm:t:<tid>:revoked-sid:<sid>``: a login session (refresh family) ended (logout, reuse
  detected); tokens whose ``sid`` claim is marked are refused.
* ``crm:t:<tid>:not-before:<sub>``: deactivation, any role change, logout everywhere, an
  OAuth client or API key revoked; tokens of ``sub`` with an older ``iat`` are refused.
* ``crm:t:<tid>:status``: every tenant status change; the status may refuse the request
  (:func:`tenant_status_refusal`).

Markers expire once every token they could concern has expired (the access-token TTL plus
a margin); the status key does not expire. While Redis is unreachable the check is
skipped (fail-open, logged): tokens are short-lived and the gateway keeps its own status
cache from identity.

Writers record the marker in the business transaction (:func:`revoke_subject_on_commit`,
:func:`revoke_session_on_commit`, :func:`publish_tenant_status_on_commit`); the runtime's
commit hook (:func:`commit_hook`, registered on every ``Database``) writes it to Redis
*after* the commit, never on rollback: a token minted between the write and the commit
would otherwise carry the old rights and a newer ``iat``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis

from crm_lib.auth import Principal, invalid_token
from crm_lib.http import ProblemError
from crm_lib.telemetry import get_logger
from crm_lib.tenancy import tenant_key

log = get_logger("crm.revocation")

#: How long markers outlive the change: tokens minted before it are dead by then.
DEFAULT_MARKER_TTL_SECONDS = 900 + 120

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Statuses with full access.
FULL_ACCESS = frozenset({"active", "trialing", "past_due"})
#: What a tenant pending deletion (unpaid) can still reach: its status, billing, exports.
PENDING_DELETION_PREFIXES: tuple[str, ...] = ("/api/v1/billing", "/api/v1/tenant")
#: What a tenant still being provisioned can read (so a sign-up can watch it turn active).
PROVISIONING_READABLE_PATHS: frozenset[str] = frozenset({"/api/v1/tenant"})

SUSPENDED_TYPE = "https://errors.crm.example/tenant-suspended"
PROVISIONING_TYPE = "https://errors.crm.example/tenant-provisioning"
INACTIVE_TYPE = "https://errors.crm.example/tenant-inactive"


def revoked_jti_key(tenant_id: uuid.UUID | str, token_id: str) -> str:
    return tenant_key(tenant_id, "revoked-jti", token_id)


def revoked_sid_key(tenant_id: uuid.UUID | str, session_id: str) -> str:
    return tenant_key(tenant_id, "revoked-sid", session_id)


def not_before_key(tenant_id: uuid.UUID | str, subject: str) -> str:
    return tenant_key(tenant_id, "not-before", subject)


def tenant_status_key(tenant_id: uuid.UUID | str) -> str:
    return tenant_key(tenant_id, "status")


# -- writers (identity) ------------------------------------------------------------------


async def revoke_token(
    redis: Redis, tenant_id: uuid.UUID | str, token_id: str, ttl_seconds: int
) -> None:
    """Refuse one access token (RFC 7009) until it expires."""
    await redis.set(revoked_jti_key(tenant_id, token_id), "1", ex=max(1, ttl_seconds))


async def publish_tenant_statuses(redis: Redis, statuses: dict[uuid.UUID, str]) -> None:
    """Write many statuses at once (identity's start-up resync)."""
    async with redis.pipeline(transaction=False) as pipe:
        for tenant_id, status in statuses.items():
            pipe.set(tenant_status_key(tenant_id), status)
        await pipe.execute()


_PENDING = "crm.revocation.pending"


class _Pending:
    def __init__(self) -> None:
        self.subjects: set[tuple[str, str]] = set()
        self.sessions: set[tuple[str, str]] = set()
        self.statuses: dict[str, str] = {}
        self.deleted_keys: set[str] = set()


def _pending(session: Any) -> _Pending:
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = _Pending()
    return cast(_Pending, pending)


def revoke_subject_on_commit(session: Any, tenant_id: uuid.UUID | str, subject: str) -> None:
    """After ``session`` commits, refuse every token of ``subject`` issued until then."""
    _pending(session).subjects.add((str(tenant_id), subject))


def revoke_session_on_commit(session: Any, tenant_id: uuid.UUID | str, session_id: str) -> None:
    """After ``session`` commits, refuse the access tokens of one login session."""
    _pending(session).sessions.add((str(tenant_id), session_id))


def publish_tenant_status_on_commit(session: Any, tenant_id: uuid.UUID | str, status: str) -> None:
    """After ``session`` commits, tell every service the tenant's new status."""
    _pending(session).statuses[str(tenant_id)] = status


def delete_key_on_commit(session: Any, key: str) -> None:
    """After ``session`` commits, drop a Redis cache entry (e.g. the gateway's API-key cache)."""
    _pending(session).deleted_keys.add(key)


def commit_hook(
    redis: Callable[[], Redis], ttl_seconds: int = DEFAULT_MARKER_TTL_SECONDS
) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """The ``Database.commit_hooks`` entry that writes what a transaction recorded."""

    async def write(info: dict[str, Any]) -> None:
        pending: _Pending | None = info.pop(_PENDING, None)
        if pending is None:
            return
        now = repr(time.time())
        async with redis().pipeline(transaction=False) as pipe:
            for tenant_id, subject in pending.subjects:
                pipe.set(not_before_key(tenant_id, subject), now, ex=ttl_seconds)
            for tenant_id, session_id in pending.sessions:
                pipe.set(revoked_sid_key(tenant_id, session_id), "1", ex=ttl_seconds)
            for tenant_id, status in pending.statuses.items():
                pipe.set(tenant_status_key(tenant_id), status)
            for key in pending.deleted_keys:
                pipe.delete(key)
            await pipe.execute()

    return write


# -- the rule ------------------------------------------------------------------------------


def tenant_status_refusal(
    status: str,
    method: str,
    path: str,
    provisioning_paths: frozenset[str] = PROVISIONING_READABLE_PATHS,
) -> ProblemError | None:
    """The problem a request gets because of its tenant's status, or None (allowed).

    One rule for the gateway and every service (docs/auth.md "Tenant access check").
    """
    if status in FULL_ACCESS:
        return None
    path = path.rstrip("/") or "/"
    if status == "suspended":
        if method in READ_METHODS:
            return None
        return ProblemError(
            403,
            "The tenant is suspended: data can be read but not changed. "
            "An owner or admin can settle the bill to lift the suspension.",
            title="Tenant suspended",
            type_=SUSPENDED_TYPE,
        )
    if status == "pending_deletion" and path.startswith(PENDING_DELETION_PREFIXES):
        # Owners/admins may still pay (billing) or take their data out (exports);
        # identity checks the roles on those endpoints.
        return None
    if status == "provisioning":
        if method in ("GET", "HEAD") and path in provisioning_paths:
            return None
        return ProblemError(
            409,
            "The tenant is still being set up; try again in a moment.",
            title="Tenant provisioning",
            type_=PROVISIONING_TYPE,
            headers={"Retry-After": "1"},
        )
    return ProblemError(
        403,
        f"The tenant is {status.replace('_', ' ')} and cannot be accessed.",
        title="Tenant not accessible",
        type_=INACTIVE_TYPE,
    )


def revocation_keys(
    tenant_id: uuid.UUID, token_id: str, session_id: str | None, subject: str
) -> tuple[list[str], str]:
    """(marker keys that must not exist, the subject's not-before key)."""
    markers = [revoked_jti_key(tenant_id, token_id)]
    if session_id:
        markers.append(revoked_sid_key(tenant_id, session_id))
    return markers, not_before_key(tenant_id, subject)


def is_revoked(not_before: Any, issued_at: float) -> bool:
    """Whether a stored not-before time (bytes/str or None) refuses a token issued then."""
    if not_before is None:
        return False
    try:
        return float(not_before) > issued_at
    except (TypeError, ValueError):
        return True  # a marker we cannot read: refuse rather than guess


class AccessCheck:
    """The per-request check every service runs after verifying a token: one Redis MGET."""

    def __init__(self, redis: Redis, retry_seconds: float = 2.0) -> None:
        self.redis = redis
        self.retry_seconds = retry_seconds
        # while Redis is away, skip the check until this monotonic time (no request waits
        # on a dead server's timeout more than once per retry period)
        self._retry_at = 0.0

    async def _read(self, principal: Principal) -> tuple[bool, str | None] | None:
        """(revoked, tenant status or None), or None while Redis is unreachable."""
        markers, nb_key = revocation_keys(
            principal.tenant_id, principal.token_id, principal.session_id, principal.subject
        )
        if self._retry_at and time.monotonic() < self._retry_at:
            return None
        try:
            values = await self.redis.mget(
                [*markers, nb_key, tenant_status_key(principal.tenant_id)]
            )
        except Exception as exc:  # Redis away: documented fail-open
            if not self._retry_at:
                log.warning("auth.access_check_unavailable", error=type(exc).__name__)
            self._retry_at = time.monotonic() + self.retry_seconds
            return None
        if self._retry_at:
            log.info("auth.access_check_recovered")
            self._retry_at = 0.0
        *marked, not_before, status = values
        revoked = any(v is not None for v in marked) or is_revoked(not_before, principal.issued_at)
        if isinstance(status, bytes):
            status = status.decode()
        return revoked, status

    async def revoked(self, principal: Principal) -> bool:
        """Whether the principal's token has been revoked (False while Redis is away)."""
        state = await self._read(principal)
        return state is not None and state[0]

    async def refusal(self, principal: Principal, method: str, path: str) -> ProblemError | None:
        """The 401 for a revoked token, the tenant-status problem, or None (go ahead)."""
        state = await self._read(principal)
        if state is None:
            return None
        revoked, status = state
        if revoked:
            return invalid_token("The access token has been revoked.")
        if status is not None:
            return tenant_status_refusal(status, method, path)
        return None
