"""API keys: created by admins, shown once, stored hashed, exchanged by the gateway.

The gateway caches a resolved key under ``crm:apikey:<sha256(key)>``; revoking deletes
that entry and marks the key's minted tokens revoked (``crm_lib.revocation``) once the
revocation commits, so the key stops working on the next request, not after a TTL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.api_keys import schemas
from crm_identity.api_keys.repository import ApiKeyRepository, CredentialDirectoryRepository
from crm_identity.keys.service import KeyStore
from crm_identity.models import ApiKey
from crm_identity.roles import MANAGERS
from crm_identity.security import constant_time_equal, new_api_key, parse_api_key, sha256_hex
from crm_identity.settings import IdentitySettings
from crm_identity.tenants.repository import TenantRepository
from crm_lib.auth import Principal
from crm_lib.events import emit
from crm_lib.http import ProblemError
from crm_lib.revocation import delete_key_on_commit, revoke_subject_on_commit
from crm_lib.tenancy import Database

CLOSED = frozenset({"deleting", "deleted", "pending_deletion"})
RESOLVED_TOKEN_TTL = 300


def cache_key(key_hash: str) -> str:
    return f"crm:apikey:{key_hash}"


def to_schema(row: ApiKey) -> schemas.ApiKey:
    return schemas.ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        last4=row.last4,
        scopes=list(row.scopes),
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        created_at=row.created_at,
    )


class ApiKeyService:
    def __init__(
        self, session: AsyncSession, principal: Principal, settings: IdentitySettings
    ) -> None:
        if not principal.has_role(*MANAGERS):
            raise ProblemError(403, "Only owners and admins manage API keys.")
        self.session = session
        self.principal = principal
        self.settings = settings
        self.repo = ApiKeyRepository(session)

    async def create(self, data: schemas.ApiKeyCreate) -> schemas.ApiKeyCreated:
        if data.expires_at is not None:
            expires = (
                data.expires_at if data.expires_at.tzinfo else data.expires_at.replace(tzinfo=UTC)
            )
            if expires <= datetime.now(UTC):
                raise ProblemError(
                    422,
                    "expires_at must be in the future.",
                    title="Validation failed",
                    errors=[{"field": "expires_at", "message": "in the past"}],
                )
        environment = data.environment or self.settings.api_key_environment
        key, public_id = new_api_key(environment)
        row = await self.repo.insert(
            id=uuid.uuid4(),
            name=data.name.strip(),
            public_id=public_id,
            prefix=f"crm_{environment}_{public_id}",
            key_hash=sha256_hex(key),
            last4=key[-4:],
            scopes=sorted(set(data.scopes)),
            created_by=self.principal.user_id,
            expires_at=data.expires_at,
        )
        await CredentialDirectoryRepository(self.session).add(
            public_id, "api_key", self.principal.tenant_id, row.id
        )
        await emit(
            self.session,
            "identity.api_key.created",
            self.principal.tenant_id,
            {"key_id": str(row.id), "scopes": list(row.scopes)},
            actor=self.principal.subject,
        )
        return schemas.ApiKeyCreated(
            id=row.id,
            name=row.name,
            key=key,
            prefix=row.prefix,
            last4=row.last4,
            scopes=list(row.scopes),
            expires_at=row.expires_at,
            created_at=row.created_at,
        )

    async def list(self) -> list[schemas.ApiKey]:
        return [to_schema(r) for r in await self.repo.newest_first()]

    async def revoke(self, key_id: uuid.UUID) -> None:
        """Revoke one key: it stops working on the next request (gateway and services)."""
        row = await self.repo.get_locked(key_id)
        if row is None:
            raise ProblemError(404, "No such API key.")
        if row.revoked_at is None:
            await _revoke(self.session, self.principal, [row])


async def revoke_keys_created_by(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID
) -> None:
    """Revoke every live key ``user_id`` created (their deactivation, docs/auth.md)."""
    rows = await ApiKeyRepository(session).live_created_by_locked(user_id)
    await _revoke(session, principal, rows)


async def _revoke(session: AsyncSession, principal: Principal, rows: list[ApiKey]) -> None:
    if not rows:
        return
    await ApiKeyRepository(session).mark_revoked([row.id for row in rows], datetime.now(UTC))
    for row in rows:
        # the gateway's cached exchange and the short-lived tokens it minted end at commit
        delete_key_on_commit(session, cache_key(row.key_hash))
        revoke_subject_on_commit(session, principal.tenant_id, f"api_key:{row.id}")
        await emit(
            session,
            "identity.api_key.revoked",
            principal.tenant_id,
            {"key_id": str(row.id)},
            actor=principal.subject,
        )


async def resolve_api_key(db: Database, keys: KeyStore, key: str) -> schemas.Resolved:
    """Exchange a presented key for a short-lived access token (gateway only)."""
    unknown = ProblemError(401, "Invalid API key.", headers={"WWW-Authenticate": "Bearer"})
    public_id = parse_api_key(key)
    if public_id is None:
        raise unknown
    async with db.platform_session() as session:
        entry = await CredentialDirectoryRepository(session).get(public_id)
        tenant = await TenantRepository(session).get(entry.tenant_id) if entry is not None else None
    if entry is None or entry.kind != "api_key" or tenant is None or tenant.status in CLOSED:
        raise unknown
    async with db.tenant_session(entry.tenant_id) as session:
        keys_repo = ApiKeyRepository(session)
        row = await keys_repo.get(entry.credential_id)
        now = datetime.now(UTC)
        if (
            row is None
            or not constant_time_equal(row.key_hash, sha256_hex(key))
            or row.revoked_at is not None
            or (row.expires_at is not None and row.expires_at <= now)
        ):
            raise unknown
        if row.last_used_at is None or row.last_used_at < now - timedelta(minutes=1):
            await keys_repo.touch_last_used(row.id, now)
        ttl = RESOLVED_TOKEN_TTL
        if row.expires_at is not None:
            ttl = max(1, min(ttl, int((row.expires_at - now).total_seconds())))
        token, expires_in, _ = await keys.mint(
            tenant_id=entry.tenant_id,
            subject=f"api_key:{row.id}",
            kind="api_key",
            scopes=list(row.scopes),
            plan=tenant.plan,
            ttl_seconds=ttl,
        )
        return schemas.Resolved(entry.tenant_id, row.id, list(row.scopes), token, expires_in)
