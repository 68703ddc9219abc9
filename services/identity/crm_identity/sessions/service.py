"""Login, refresh-token rotation (with reuse detection) and logout.

A refresh token belongs to a *family* (one login). Each refresh rotates it; a
rotated or revoked token presented again means it leaked, so the whole family
is revoked. Failed logins count per account; past the limit the account is
locked for a while. Logins are also rate-limited per client IP (Redis, failing
open to an in-process limiter when Redis is unavailable).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.emails import normalize_email
from crm_identity.keys.service import KeyStore
from crm_identity.models import LoginDirectory, RefreshToken, Tenant, User
from crm_identity.security import PasswordHashing, new_tenant_token, sha256_hex, tenant_of_token
from crm_identity.sessions import schemas
from crm_identity.settings import IdentitySettings
from crm_lib.auth import Principal
from crm_lib.http import ProblemError
from crm_lib.telemetry import get_logger
from crm_lib.tenancy import Database

log = get_logger("crm.identity.sessions")

CLOSED_STATES = frozenset({"pending_deletion", "deleting", "deleted"})
INVALID_LOGIN = "Invalid email or password."


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, title="Unauthorized", headers={"WWW-Authenticate": "Bearer"})


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
    ) -> None:
        self.db = db
        self.keys = keys
        self.settings = settings
        self.hashing = hashing
        self.limiter = limiter

    async def issue(
        self, session: AsyncSession, tenant: Tenant, user: User, family_id: uuid.UUID | None = None
    ) -> schemas.TokenPair:
        """A new access token and refresh token (in ``family_id`` or a new family)."""
        refresh = new_tenant_token(tenant.id)
        await session.execute(
            insert(RefreshToken).values(
                id=uuid.uuid4(),
                user_id=user.id,
                family_id=family_id or uuid.uuid4(),
                token_hash=sha256_hex(refresh),
                expires_at=datetime.now(UTC) + timedelta(days=self.settings.refresh_token_ttl_days),
            )
        )
        access, expires_in, _jti = await self.keys.mint(
            tenant_id=tenant.id,
            subject=f"user:{user.id}",
            kind="user",
            roles=list(user.roles),
            plan=tenant.plan,
        )
        return schemas.TokenPair(access, "Bearer", expires_in, refresh, tenant.id, user.id)

    async def _resolve_tenant(
        self, email: str, slug: str | None
    ) -> tuple[Tenant, uuid.UUID] | None:
        async with self.db.platform_session() as session:
            stmt = (
                select(Tenant, LoginDirectory.user_id)
                .join(LoginDirectory, LoginDirectory.tenant_id == Tenant.id)
                .where(LoginDirectory.email == email)
            )
            if slug is not None:
                stmt = stmt.where(Tenant.slug == slug)
            rows = (await session.execute(stmt)).all()
        if len(rows) > 1:
            raise ProblemError(
                400,
                "This email belongs to several tenants; say which one with `tenant`.",
                errors=[{"field": "tenant", "message": "required for this email"}],
            )
        return (rows[0][0], rows[0][1]) if rows else None

    async def login(self, data: schemas.LoginRequest, ip: str) -> schemas.TokenPair:
        await self.limiter.hit(ip)
        email = normalize_email(data.email)
        found = await self._resolve_tenant(email, data.tenant)
        if found is None:
            await self.hashing.verify(None, data.password)  # same cost as a real check
            raise _unauthorized(INVALID_LOGIN)
        tenant, user_id = found
        if tenant.status in CLOSED_STATES:
            raise ProblemError(403, f"This tenant is {tenant.status}.", title="Forbidden")
        outcome = _Outcome()
        async with self.db.tenant_session(tenant.id) as session:
            user = (
                await session.execute(select(User).where(User.id == user_id).with_for_update())
            ).scalar_one_or_none()
            now = datetime.now(UTC)
            if user is None or user.status != "active":
                await self.hashing.verify(None, data.password)
                outcome.error = _unauthorized(INVALID_LOGIN)
            elif user.locked_until is not None and user.locked_until > now:
                wait = int((user.locked_until - now).total_seconds()) + 1
                outcome.error = ProblemError(
                    403,
                    f"Too many failed logins: the account is locked for {wait} more seconds.",
                    title="Account locked",
                    type_="https://errors.crm.example/account-locked",
                    headers={"Retry-After": str(wait)},
                )
            elif not await self.hashing.verify(user.password_hash, data.password):
                failures = user.failed_logins + 1
                values: dict[str, object] = {"failed_logins": failures}
                if failures >= self.settings.login_max_failures:
                    values = {
                        "failed_logins": 0,
                        "locked_until": now + timedelta(minutes=self.settings.lockout_minutes),
                    }
                    log.warning("login.locked", tenant=str(tenant.id), user=str(user.id))
                await session.execute(update(User).where(User.id == user.id).values(**values))
                outcome.error = _unauthorized(INVALID_LOGIN)
            else:
                await session.execute(
                    update(User)
                    .where(User.id == user.id)
                    .values(failed_logins=0, locked_until=None, last_login_at=func.now())
                )
                outcome.pair = await self.issue(session, tenant, user)
        if outcome.error is not None:  # raised after commit: the failure count must stick
            raise outcome.error
        assert outcome.pair is not None
        return outcome.pair

    async def refresh(self, data: schemas.RefreshRequest) -> schemas.TokenPair:
        tenant_id = tenant_of_token(data.refresh_token)
        if tenant_id is None:
            raise _unauthorized("Unknown refresh token.")
        async with self.db.platform_session() as session:
            tenant = await session.get(Tenant, tenant_id)
        if tenant is None or tenant.status in CLOSED_STATES:
            raise _unauthorized("Unknown refresh token.")
        outcome = _Outcome()
        async with self.db.tenant_session(tenant_id) as session:
            row = (
                await session.execute(
                    select(RefreshToken)
                    .where(RefreshToken.token_hash == sha256_hex(data.refresh_token))
                    .with_for_update()
                )
            ).scalar_one_or_none()
            now = datetime.now(UTC)
            if row is None:
                outcome.error = _unauthorized("Unknown refresh token.")
            elif row.rotated_at is not None or row.revoked_at is not None:
                await session.execute(
                    update(RefreshToken)
                    .where(
                        RefreshToken.family_id == row.family_id, RefreshToken.revoked_at.is_(None)
                    )
                    .values(revoked_at=now)
                )
                log.warning(
                    "refresh.reuse_detected", tenant=str(tenant_id), family=str(row.family_id)
                )
                outcome.error = _unauthorized(
                    "This refresh token was already used; the session has been revoked."
                )
            elif row.expires_at <= now:
                outcome.error = _unauthorized("The refresh token has expired.")
            else:
                user = await session.get(User, row.user_id)
                if user is None or user.status != "active":
                    outcome.error = _unauthorized("The user is no longer active.")
                else:
                    await session.execute(
                        update(RefreshToken).where(RefreshToken.id == row.id).values(rotated_at=now)
                    )
                    outcome.pair = await self.issue(session, tenant, user, row.family_id)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.pair is not None
        return outcome.pair

    async def logout(self, principal: Principal, data: schemas.LogoutRequest) -> None:
        if principal.user_id is None:
            raise ProblemError(400, "Only user sessions can log out.")
        async with self.db.tenant_session(principal.tenant_id) as session:
            stmt = update(RefreshToken).where(
                RefreshToken.user_id == principal.user_id, RefreshToken.revoked_at.is_(None)
            )
            if not data.everywhere:
                if data.refresh_token is None:
                    raise ProblemError(
                        422,
                        "Give the refresh_token to end, or everywhere=true.",
                        title="Validation failed",
                        errors=[{"field": "refresh_token", "message": "required"}],
                    )
                family = (
                    await session.execute(
                        select(RefreshToken.family_id).where(
                            RefreshToken.token_hash == sha256_hex(data.refresh_token),
                            RefreshToken.user_id == principal.user_id,
                        )
                    )
                ).scalar_one_or_none()
                if family is None:
                    return  # unknown token: nothing to end (idempotent)
                stmt = stmt.where(RefreshToken.family_id == family)
            await session.execute(stmt.values(revoked_at=func.now()))
