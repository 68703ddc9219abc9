"""crm_lib.revocation against real PostgreSQL and Redis: markers reach Redis only after the
commit, the per-request check reads them, and a dead Redis is skipped (fail-open) quickly."""

from __future__ import annotations

import time
import uuid

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from crm_dev.devstack import free_port
from crm_dev.testing import SettingsFactory
from crm_lib.auth import Principal
from crm_lib.revocation import (
    AccessCheck,
    commit_hook,
    not_before_key,
    publish_tenant_status_on_commit,
    revoke_session_on_commit,
    revoke_subject_on_commit,
    revoked_sid_key,
    tenant_status_key,
)
from crm_lib.tenancy import Database


def _principal(tenant: uuid.UUID, issued_at: float, sid: str | None = None) -> Principal:
    user = uuid.uuid4()
    return Principal(
        tenant_id=tenant,
        subject=f"user:{user}",
        kind="user",
        user_id=user,
        roles=frozenset({"admin"}),
        scopes=None,
        token_id=uuid.uuid4().hex,
        issued_at=issued_at,
        session_id=sid,
    )


async def test_markers_are_written_after_commit_never_on_rollback(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(database_name="postgres")  # no tables needed, only a commit
    redis = Redis.from_url(settings.redis_url)
    db = Database(settings)
    db.commit_hooks.append(commit_hook(lambda: redis))
    tenant = uuid.uuid4()
    try:
        with pytest.raises(RuntimeError):
            async with db.platform_session() as session:
                await session.execute(text("SELECT 1"))
                revoke_subject_on_commit(session, tenant, "user:rolled-back")
                raise RuntimeError("the change fails")
        assert await redis.get(not_before_key(tenant, "user:rolled-back")) is None

        before = time.time()
        async with db.platform_session() as session:
            await session.execute(text("SELECT 1"))
            revoke_subject_on_commit(session, tenant, "user:gone")
            revoke_session_on_commit(session, tenant, "family-1")
            publish_tenant_status_on_commit(session, tenant, "suspended")
            # nothing is visible before the commit
            assert await redis.get(not_before_key(tenant, "user:gone")) is None
        stored = await redis.get(not_before_key(tenant, "user:gone"))
        assert stored is not None and float(stored) >= before
        assert 0 < await redis.ttl(not_before_key(tenant, "user:gone")) <= 1020
        assert await redis.get(revoked_sid_key(tenant, "family-1")) == b"1"
        assert await redis.get(tenant_status_key(tenant)) == b"suspended"
    finally:
        await db.dispose()
        await redis.aclose()


async def test_access_check_reads_markers_and_status(make_settings: SettingsFactory) -> None:
    redis = Redis.from_url(make_settings().redis_url)
    check = AccessCheck(redis)
    tenant = uuid.uuid4()
    try:
        old = _principal(tenant, time.time() - 5, sid="s-1")
        assert await check.refusal(old, "POST", "/api/v1/contacts") is None

        await redis.set(not_before_key(tenant, old.subject), repr(time.time()))
        refused = await check.refusal(old, "GET", "/api/v1/contacts")
        assert refused is not None and refused.status_code == 401
        fresh = Principal(**{**_as_dict(old), "issued_at": time.time() + 1, "session_id": None})
        assert await check.refusal(fresh, "GET", "/api/v1/contacts") is None

        other = _principal(tenant, time.time(), sid="s-2")
        await redis.set(revoked_sid_key(tenant, "s-2"), "1")
        assert (await check.refusal(other, "GET", "/api/v1/x")).status_code == 401  # type: ignore[union-attr]

        await redis.set(tenant_status_key(tenant), "suspended")
        write = await check.refusal(fresh, "POST", "/api/v1/contacts")
        assert write is not None and write.status_code == 403
        assert await check.refusal(fresh, "GET", "/api/v1/contacts") is None
        await redis.set(tenant_status_key(tenant), "provisioning")
        assert (await check.refusal(fresh, "GET", "/api/v1/contacts")).status_code == 409  # type: ignore[union-attr]
    finally:
        await redis.aclose()


async def test_dead_redis_fails_open() -> None:
    redis = Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5, socket_connect_timeout=0.5
    )
    check = AccessCheck(redis, retry_seconds=30)
    principal = _principal(uuid.uuid4(), time.time())
    try:
        # documented fail-open: tokens are short-lived, the gateway keeps its status cache
        assert await check.refusal(principal, "POST", "/api/v1/contacts") is None
        assert await check.revoked(principal) is False
    finally:
        await redis.aclose()


def _as_dict(principal: Principal) -> dict[str, object]:
    return {f: getattr(principal, f) for f in principal.__struct_fields__}
