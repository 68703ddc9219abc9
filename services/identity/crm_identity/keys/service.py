"""JWT signing keys and access-token minting (ES256, RFC 9068 profile).

The active key is the newest unretired one. Rotation adds a new key and retires
the old; a retired key stays in the JWKS until every token it signed expired.
With ``CRM_JWT_PRIVATE_KEY`` set, that key is imported (kid = its thumbprint)
instead of generating one.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.keys.repository import SigningKeyRepository
from crm_identity.settings import IdentitySettings
from crm_lib.tenancy import Database

AUDIENCE = "crm-api"


@dataclass
class _Cache:
    active: ECKey
    public: list[dict[str, Any]]
    loaded_at: float


class KeyStore:
    """Process-wide view of the signing keys (refreshed every few seconds)."""

    def __init__(self, db: Database, settings: IdentitySettings, refresh_seconds: float = 10):
        self.db = db
        self.settings = settings
        self.refresh_seconds = refresh_seconds
        self._cache: _Cache | None = None

    async def _load(self) -> _Cache:
        keep_after = datetime.now(UTC) - timedelta(
            seconds=self.settings.access_token_ttl_seconds + 60
        )
        for _attempt in range(2):
            async with self.db.platform_session() as session:
                rows = await SigningKeyRepository(session).published(keep_after)
            active_rows = [r for r in rows if r.retired_at is None]
            if active_rows:
                active = ECKey.import_key(json.loads(active_rows[0].private_jwk))
                return _Cache(active, [r.public_jwk for r in rows], time.monotonic())
            async with self.db.platform_session() as session:
                await self._create(session)
        raise RuntimeError("no signing key could be created")

    async def _create(self, session: AsyncSession) -> None:
        # One process creates the first key; others wait on the lock and find it.
        repo = SigningKeyRepository(session)
        await repo.lock()
        if await repo.has_active():
            return
        await repo.insert(self._new_key_row(), if_absent=True)

    def _new_key_row(self) -> dict[str, Any]:
        if self.settings.jwt_private_key is not None:
            key = ECKey.import_key(self.settings.jwt_private_key.get_secret_value())
            kid = key.thumbprint()
        else:
            kid = uuid.uuid4().hex
            key = ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)
        private = key.as_dict(private=True)
        private["kid"] = kid
        public = key.as_dict(private=False)
        public.update({"kid": kid, "use": "sig", "alg": "ES256"})
        return {"kid": kid, "private_jwk": json.dumps(private), "public_jwk": public}

    async def _current(self) -> _Cache:
        if self._cache is None or time.monotonic() - self._cache.loaded_at > self.refresh_seconds:
            self._cache = await self._load()
        return self._cache

    async def jwks(self) -> dict[str, Any]:
        return {"keys": (await self._current()).public}

    async def rotate(self) -> str:
        async with self.db.platform_session() as session:
            repo = SigningKeyRepository(session)
            await repo.lock()
            await repo.retire_active(datetime.now(UTC))
            row = self._new_key_row()
            if self.settings.jwt_private_key is not None:
                # A configured key cannot rotate itself: generate a fresh one.
                kid = uuid.uuid4().hex
                key = ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)
                public = key.as_dict(private=False)
                public.update({"kid": kid, "use": "sig", "alg": "ES256"})
                row = {
                    "kid": kid,
                    "private_jwk": json.dumps(key.as_dict(private=True)),
                    "public_jwk": public,
                }
            await repo.insert(row)
        self._cache = None
        return str(row["kid"])

    async def ready(self) -> None:
        """Load the keys now, so ``mint_now`` can run in synchronous code (authlib)."""
        await self._current()

    async def mint(self, **kwargs: Any) -> tuple[str, int, str]:
        """(token, expires_in, jti)."""
        await self._current()
        return self.mint_now(**kwargs)

    def mint_now(
        self,
        *,
        tenant_id: uuid.UUID,
        subject: str,
        kind: str,
        roles: list[str] | None = None,
        scopes: list[str] | None = None,
        plan: str | None = None,
        ttl_seconds: int | None = None,
        session_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, int, str]:
        """Sign with the active key already loaded (call ``ready()`` first)."""
        cache = self._cache
        if cache is None:
            raise RuntimeError("KeyStore.ready() was not awaited")
        # iat keeps its fraction (RFC 7519 NumericDate): a not-before marker written at a
        # role change refuses tokens minted earlier in the same second (crm_lib.revocation).
        issued_at = time.time()
        now = int(issued_at)
        ttl = ttl_seconds or self.settings.access_token_ttl_seconds
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "iss": self.settings.jwt_issuer,
            "aud": AUDIENCE,
            "sub": subject,
            "kind": kind,
            "tid": str(tenant_id),
            "roles": roles or [],
            "iat": issued_at,
            "nbf": now,
            "exp": now + ttl,
            "jti": jti,
        }
        if scopes is not None:
            claims["scope"] = " ".join(scopes)
        if session_id is not None:
            claims["sid"] = session_id
        if plan:
            claims["plan"] = plan
        if extra:
            claims.update(extra)
        header = {"alg": "ES256", "kid": cache.active.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, cache.active), ttl, jti
