"""Login, refresh-token rotation (with reuse detection) and logout.

A refresh token belongs to a *family* (one login). Each refresh rotates it; a
rotated or revoked token presented again means it leaked, so the whole family
is revoked.

Login never tells a stranger whether an email has an account: an unknown email,
a wrong password, an inactive user and a throttled attempt all get the same 401
(:data:`INVALID_LOGIN`; a throttled one adds ``Retry-After``, and the throttle is
keyed by the submitted email whether or not it exists). Failed logins are slowed
per account and client address (:mod:`crm_identity.sessions.throttle`), never
locked. Logins are also rate-limited per client address (Redis, failing open to an
in-process limiter when Redis is unavailable). The address is the gateway's proven
``X-Forwarded-For`` or the socket peer (:func:`crm_lib.client_ip.client_address`).

An email may belong to several tenants (invitations, sign-ups): ``tenant`` (slug)
picks one; without it the login goes to the oldest open tenant of that email. One
password check either way, so the cost does not reveal how many accounts exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.emails import normalize_email
from crm_identity.keys.service import KeyStore
from crm_identity.models import Tenant, User
from crm_identity.security import PasswordHashing, new_tenant_token, sha256_hex, tenant_of_token
from crm_identity.sessions import schemas
from crm_identity.sessions.repository import SessionRepository
from crm_identity.sessions.throttle import LoginThrottle
from crm_identity.settings import IdentitySettings
from crm_identity.tenants.repository import TenantRepository
from crm_identity.users.repository import UserRepository
from crm_lib.auth import Principal
from crm_lib.http import ProblemError
from crm_lib.revocation import revoke_session_on_commit, revoke_subject_on_commit
from crm_lib.telemetry import get_logger
from crm_lib.tenancy import Database

log = get_logger("crm.identity.sessions")

CLOSED_STATES = frozenset({"pending_deletion", "deleting", "deleted"})
INVALID_LOGIN = "Invalid email, password or company."
INVALID_LOGIN_TYPE = "https://errors.crm.example/invalid-login"


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, title="Unauthorized", headers={"WWW-Authenticate": "Bearer"})


def invalid_login(retry_after: int | None = None) -> ProblemError:
    """The one answer to every failed login (unknown, wrong, inactive, throttled)."""
    headers = {"WWW-Authenticate": "Bearer"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return ProblemError(
        401, INVALID_LOGIN, title="Unauthorized", type_=INVALID_LOGIN_TYPE, headers=headers
    )


class LoginLimiter:
    """Per-IP login attempts; Redis first, an in-process window if Redis is away."""

    def __init__(self, settings: IdentitySettings) -> None:
        self.item = RateLimitItemPerMinute(settings.login_per_ip_per_minute)
        url = settings.redis_url.replace("redis://", "async+redis://", 1)
        self.remote = FixedWindowRateLimiter(
            RedisStorage(
                url,
                implementation="redispy",
                socket_timeout=0.3,
                socket_connect_timeout=0.3,
                key_prefix="crm:ip:login",
            )
        )
        self.local = FixedWindowRateLimiter(MemoryStorage())

    async def hit(self, ip: str) -> None:
        try:
            allowed = await self.remote.hit(self.item, ip)
        except Exception:  # documented fail-open: Redis down must not stop logins
            allowed = await self.local.hit(self.item, ip)
        if not allowed:
            raise ProblemError(
                429,
                "Too many login attempts from this address; slow down.",
                title="Too Many Requests",
                headers={"Retry-After": "60"},
            )


@dataclass
class _Outcome:
    pair: schemas.TokenPair | None = None
    error: ProblemError | None = None


class SessionService:
    def __init__(
        self,
        db: Database,
        keys: KeyStore,
        settings: IdentitySettings,
        hashing: PasswordHashing,
        limiter: LoginLimiter,
        throttle: LoginThrottle,
    ) -> None:
        self.db = db
        self.keys = keys
        self.settings = settings
        self.hashing = hashing
        self.limiter = limiter
        self.throttle = throttle

    async def issue(
        self, session: AsyncSession, tenant: Tenant, user: User, family_id: uuid.UUID | None = None
    ) -> schemas.TokenPair:
        """A new access token and refresh token (in ``family_id`` or a new family)."""
        refresh = new_tenant_token(tenant.id)
        family = family_id or uuid.uuid4()
        await SessionRepository(session).insert_refresh_token(
            user.id,
            family,
            sha256_hex(refresh),
            datetime.now(UTC) + timedelta(days=self.settings.refresh_token_ttl_days),
        )
        access, expires_in, _jti = await self.keys.mint(
            tenant_id=tenant.id,
            subject=f"user:{user.id}",
            kind="user",
            roles=list(user.roles),
            plan=tenant.plan,
            session_id=str(family),
        )
        return schemas.TokenPair(access, "Bearer", expires_in, refresh, tenant.id, user.id)

    async def _resolve_tenant(
        self, email: str, slug: str | None
    ) -> tuple[Tenant, uuid.UUID] | None:
        """The account ``email`` logs into: in tenant ``slug``, else the oldest open one."""
        async with self.db.platform_session() as session:
            return await SessionRepository(session).account_for(email, slug, CLOSED_STATES)

    async def login(self, data: schemas.LoginRequest, ip: str) -> schemas.TokenPair:
        await self.limiter.hit(ip)
        email = normalize_email(data.email)
        decision = await self.throttle.begin(email, ip)
        if not decision.allowed:  # not checked at all: the password stays unguessable
            raise invalid_login(decision.retry_after)
        found = await self._resolve_tenant(email, data.tenant)
        if found is None:
            await self.hashing.verify(None, data.password)  # same cost as a real check
            raise invalid_login()
        tenant, user_id = found
        outcome = _Outcome()
        async with self.db.tenant_session(tenant.id) as session:
            users = UserRepository(session)
            user = await users.get(user_id)
            stored = user.password_hash if user is not None and user.status == "active" else None
            if not await self.hashing.verify(stored, data.password):
                outcome.error = invalid_login()
            elif tenant.status in CLOSED_STATES:  # told only to whoever knows the password
                outcome.error = ProblemError(
                    403, f"This tenant is {tenant.status}.", title="Forbidden"
                )
            else:
                assert user is not None
                await users.touch_last_login(user.id)
                outcome.pair = await self.issue(session, tenant, user)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.pair is not None
        await self.throttle.success(email, ip)
        return outcome.pair

    async def refresh(self, data: schemas.RefreshRequest) -> schemas.TokenPair:
        tenant_id = tenant_of_token(data.refresh_token)
        if tenant_id is None:
            raise _unauthorized("Unknown refresh token.")
        async with self.db.platform_session() as session:
            tenant = await TenantRepository(session).get(tenant_id)
        if tenant is None or tenant.status in CLOSED_STATES:
            raise _unauthorized("Unknown refresh token.")
        outcome = _Outcome()
        async with self.db.tenant_session(tenant_id) as session:
            tokens = SessionRepository(session)
            row = await tokens.refresh_token_locked(sha256_hex(data.refresh_token))
            now = datetime.now(UTC)
            if row is None:
                outcome.error = _unauthorized("Unknown refresh token.")
            elif row.rotated_at is not None or row.revoked_at is not None:
                await tokens.revoke_family(row.family_id, now)
                # The leaked family's access tokens die with it.
                revoke_session_on_commit(session, tenant_id, str(row.family_id))
                log.warning(
                    "refresh.reuse_detected", tenant=str(tenant_id), family=str(row.family_id)
                )
                outcome.error = _unauthorized(
                    "This refresh token was already used; the session has been revoked."
                )
            elif row.expires_at <= now:
                outcome.error = _unauthorized("The refresh token has expired.")
            else:
                user = await UserRepository(session).get(row.user_id)
                if user is None or user.status != "active":
                    outcome.error = _unauthorized("The user is no longer active.")
                else:
                    await tokens.mark_rotated(row.id, now)
                    outcome.pair = await self.issue(session, tenant, user, row.family_id)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.pair is not None
        return outcome.pair

    async def logout(self, principal: Principal, data: schemas.LogoutRequest) -> None:
        if principal.user_id is None:
            raise ProblemError(400, "Only user sessions can log out.")
        async with self.db.tenant_session(principal.tenant_id) as session:
            tokens = SessionRepository(session)
            family: uuid.UUID | None = None
            if not data.everywhere:
                if data.refresh_token is None:
                    raise ProblemError(
                        422,
                        "Give the refresh_token to end, or everywhere=true.",
                        title="Validation failed",
                        errors=[{"field": "refresh_token", "message": "required"}],
                    )
                family = await tokens.family_of(sha256_hex(data.refresh_token), principal.user_id)
                if family is None:
                    return  # unknown token: nothing to end (idempotent)
                # that session's access tokens end now too, not when they expire
                revoke_session_on_commit(session, principal.tenant_id, str(family))
            else:
                revoke_subject_on_commit(session, principal.tenant_id, principal.subject)
            await tokens.revoke_user_tokens(principal.user_id, family)
