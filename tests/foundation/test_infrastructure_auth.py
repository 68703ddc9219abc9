"""The test servers are configured like `make run`: nothing gets in without its password."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url

from crm_dev.devstack import EmbeddedPostgres, EmbeddedRedis


async def test_postgres_requires_the_password(pg_server: EmbeddedPostgres) -> None:
    url = make_url(pg_server.url)
    assert url.password  # the URL every setting gets carries it
    conn = await asyncpg.connect(pg_server.url)
    assert await conn.fetchval("SELECT current_setting('password_encryption')") == ("scram-sha-256")
    method = await conn.fetchval(
        "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' LIMIT 1"
    )
    await conn.close()
    assert method == "scram-sha-256"
    for password in (None, "wrong"):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host=url.host,
                port=url.port,
                user=url.username,
                password=password,
                database="postgres",
            )


async def test_redis_requires_the_password(redis_server: EmbeddedRedis) -> None:
    good = aioredis.Redis.from_url(redis_server.url)
    assert await good.ping()
    await good.aclose()
    for url in (
        f"redis://127.0.0.1:{redis_server.port}/0",
        f"redis://:wrong@127.0.0.1:{redis_server.port}/0",
    ):
        anonymous = aioredis.Redis.from_url(url)
        with pytest.raises(redis_exceptions()):
            await anonymous.get("anything")
        await anonymous.aclose()


def redis_exceptions() -> tuple[type[Exception], ...]:
    import redis

    return (redis.AuthenticationError, redis.ResponseError)
