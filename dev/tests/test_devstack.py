"""The embedded servers are real: write data, restart, read it back (no mocks, no Docker)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import nats
import pytest
import redis

from crm_dev.devstack import (
    PG_OS_USER,
    RESERVED_PORTS,
    EmbeddedNats,
    EmbeddedPostgres,
    EmbeddedRedis,
    NatsUser,
    free_port,
    service_nats_users,
)


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_free_port_and_reserved_ports(tmp_path: Path) -> None:
    port = free_port()
    assert 1024 < port < 65536
    assert port not in RESERVED_PORTS
    assert not _port_open(port)
    for reserved in (5432, 6379, 4222):
        with pytest.raises(ValueError):
            EmbeddedRedis(tmp_path, reserved)


# --- PostgreSQL --------------------------------------------------------------------------


async def _pg_write(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        await conn.execute("INSERT INTO t VALUES (1, 'Ärger')")
    finally:
        await conn.close()


async def _pg_read(url: str) -> tuple[str, str, int, str]:
    conn = await asyncpg.connect(url)
    try:
        name = await conn.fetchval("SELECT upper(name) FROM t WHERE id = 1")
        encoding = await conn.fetchval("SHOW server_encoding")
        max_conn = int(await conn.fetchval("SHOW max_connections"))
        listen = await conn.fetchval("SHOW listen_addresses")
        return name, encoding, max_conn, listen
    finally:
        await conn.close()


async def _pg_refused(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidPasswordError:
        return True
    await conn.close()
    return False


def test_postgres_persists_across_restart_and_crash(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", free_port(), password="pg-secret", fast=True)
    assert pg.url == f"postgresql://postgres:pg-secret@127.0.0.1:{pg.port}/postgres"
    assert "pg-secret" not in repr(pg)
    with pg:
        pg.start()  # idempotent while running
        asyncio.run(_pg_write(pg.url))
    assert not _port_open(pg.port)
    assert not (pg.data_dir / "postmaster.pid").exists()

    pg.start()
    assert asyncio.run(_pg_read(pg.url)) == ("ÄRGER", "UTF8", 300, "127.0.0.1")
    no_password = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    assert asyncio.run(_pg_refused(no_password))
    assert asyncio.run(_pg_refused(no_password.replace("postgres@", "postgres:wrong@")))

    # a crash leaves postmaster.pid behind; start() must recover (fsync=off, but the OS has it)
    pg.kill()
    assert (pg.data_dir / "postmaster.pid").exists()
    pg.start()
    assert asyncio.run(_pg_read(pg.url))[0] == "ÄRGER"

    # a second handle on the same dir/port adopts the running server instead of failing
    again = EmbeddedPostgres(pg.data_dir, pg.port)
    again.start()
    again.stop()
    assert not _port_open(pg.port)
    pg.stop()  # already stopped: no-op


def test_postgres_requires_its_password_even_on_an_old_trust_cluster(tmp_path: Path) -> None:
    """A cluster from before passwords (trust auth) or a rotated secret: every start sets the
    password given now and rewrites pg_hba.conf; trust never survives a start."""
    pg = EmbeddedPostgres(tmp_path / "pg", password="first", fast=True)
    with pg:
        asyncio.run(_pg_write(pg.url))
    hba = pg.data_dir / "pg_hba.conf"
    hba.write_text("host all all 127.0.0.1/32 trust\n" + hba.read_text())
    rotated = EmbeddedPostgres(pg.data_dir, pg.port, password="second", fast=True)
    with rotated:
        assert asyncio.run(_pg_read(rotated.url))[0] == "ÄRGER"
        assert asyncio.run(_pg_refused(pg.url))  # the old password
        assert asyncio.run(_pg_refused(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"))
    assert "trust" not in hba.read_text()


def test_postgres_ignores_stale_pid_of_unrelated_process(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", fast=True)
    pg.start()
    pg.stop()
    pidfile = pg.data_dir / "postmaster.pid"
    # The pid in a stale postmaster.pid got reused by an unrelated live process of the same OS
    # user: postgres itself would refuse to start ("lock file already exists").
    squatter = subprocess.Popen(  # noqa: S603
        [shutil.which("sleep") or "/bin/sleep", "60"],  # not our python: /root is 0700
        user=PG_OS_USER if os.geteuid() == 0 else None,
    )
    try:
        pidfile.write_text(
            f"{squatter.pid}\n{pg.data_dir}\n0\n{pg.port}\n\n127.0.0.1\n0 0\nready\n"
        )
        with pg:
            assert _port_open(pg.port)
        assert squatter.poll() is None  # left alone
    finally:
        squatter.kill()
        squatter.wait()


# --- NATS JetStream ----------------------------------------------------------------------


async def _nats_write(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="DEVSTACK", subjects=["devstack.>"])
        ack = await js.publish("devstack.hello", b"world")
        assert ack.seq == 1
    finally:
        await nc.drain()


async def _nats_read(url: str) -> tuple[int, bytes]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("DEVSTACK")
        msg = await js.get_msg("DEVSTACK", seq=1)
        return info.state.messages, msg.data or b""
    finally:
        await nc.drain()


def test_nats_jetstream_persists_across_restart(tmp_path: Path) -> None:
    ns = EmbeddedNats(tmp_path / "nats", free_port(), admin_password="nats-secret")
    assert ns.url == f"nats://127.0.0.1:{ns.port}"
    assert ns.admin_url == f"nats://crm-admin:nats-secret@127.0.0.1:{ns.port}"
    with ns:
        asyncio.run(_nats_write(ns.admin_url))
    assert not _port_open(ns.port)
    with ns:
        assert asyncio.run(_nats_read(ns.admin_url)) == (1, b"world")
        ns.kill()
        assert not _port_open(ns.port)
        ns.start()
        assert asyncio.run(_nats_read(ns.admin_url)) == (1, b"world")


async def _nats_connect_error(url: str, **kw: str) -> str | None:
    try:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, **kw)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    await nc.close()
    return None


def test_nats_refuses_anonymous_and_wrong_passwords(tmp_path: Path) -> None:
    users = [*service_nats_users({"contacts": "c-pw"}), NatsUser("ops", "ops-pw")]
    with EmbeddedNats(tmp_path / "nats", users=users) as ns:
        assert asyncio.run(_nats_connect_error(ns.url)) is not None
        assert asyncio.run(_nats_connect_error(ns.url, user="contacts", password="no")) is not None
        assert asyncio.run(_nats_connect_error(ns.url, user="contacts", password="c-pw")) is None
        assert asyncio.run(_nats_connect_error(ns.url, user="ops", password="ops-pw")) is None
        assert ns.config_path.stat().st_mode & 0o077 == 0  # passwords: owner only
    assert "c-pw" not in repr(users)


# --- Redis -------------------------------------------------------------------------------


def test_redis_persists_across_restart(tmp_path: Path) -> None:
    rs = EmbeddedRedis(tmp_path / "redis", free_port(), password="redis-secret")
    assert rs.url == f"redis://:redis-secret@127.0.0.1:{rs.port}/0"
    with rs:
        r = redis.Redis.from_url(rs.url)
        r.set("k", "v")
        r.close()
        anonymous = redis.Redis.from_url(f"redis://127.0.0.1:{rs.port}/0")
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("k")
        anonymous.close()
        wrong = redis.Redis.from_url(f"redis://:nope@127.0.0.1:{rs.port}/0")
        with pytest.raises(redis.AuthenticationError):
            wrong.get("k")
        wrong.close()
        assert rs.config_path.stat().st_mode & 0o077 == 0
    assert not _port_open(rs.port)
    assert (rs.data_dir / "appendonly.aof").exists()

    rs.start()
    # a second handle on the same dir/port replaces the (orphaned) first process
    other = EmbeddedRedis(rs.data_dir, rs.port)
    with other:
        assert rs.pid is None or not _alive(rs.pid)
        r = redis.Redis.from_url(other.url)
        assert r.get("k") == b"v"
        r.close()
    rs.stop()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_servers_die_with_their_parent(tmp_path: Path) -> None:
    """If the owning process is SIGKILLed, the watchdogs stop its servers (no orphans)."""
    ports = [free_port() for _ in range(3)]
    script = (
        "import time\n"
        "from pathlib import Path\n"
        "from crm_dev.devstack import EmbeddedNats, EmbeddedPostgres, EmbeddedRedis\n"
        f"root = Path({str(tmp_path)!r})\n"
        f"EmbeddedPostgres(root / 'pg', {ports[0]}, fast=True).start()\n"
        f"EmbeddedNats(root / 'nats', {ports[1]}).start()\n"
        f"EmbeddedRedis(root / 'redis', {ports[2]}).start()\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)  # noqa: S603
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"up"
        assert all(_port_open(p) for p in ports)
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 15
    while any(_port_open(p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_port_open(p) for p in ports)
    # postgres got a clean fast shutdown, not a crash
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


# --- make run: passwords generated once, kept, reused -----------------------------------


def test_make_run_servers_require_passwords_kept_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm_dev import devstack_runner
    from crm_lib.settings import SERVICE_NAMES

    for var in ("CRM_DATABASE_URL", "CRM_NATS_URL", "CRM_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    for key in ("PG", "NATS", "REDIS"):
        monkeypatch.setenv(f"CRM_DEVSTACK_{key}_PORT", str(free_port()))
    monkeypatch.setattr(devstack_runner, "_say", lambda _message: None)
    data = tmp_path / "devstack"
    data.mkdir()

    env, nats_env, servers = devstack_runner._start_servers(data)
    try:
        asyncio.run(_pg_write(env["CRM_DATABASE_URL"]))
        r = redis.Redis.from_url(env["CRM_REDIS_URL"])
        r.set("k", "v")
        r.close()
    finally:
        for server in reversed(servers):
            server.stop()
    files = {
        "postgres_password",
        "redis_password",
        "nats_admin_password",
        *(f"nats_{name}_password" for name in SERVICE_NAMES),
    }
    for name in files:
        assert (data / name).stat().st_mode & 0o777 == 0o600, name
    pg_password = (data / "postgres_password").read_text()
    assert f":{pg_password}@" in env["CRM_DATABASE_URL"]
    assert f":{(data / 'redis_password').read_text()}@" in env["CRM_REDIS_URL"]
    assert nats_env["contacts"] == {
        "CRM_NATS_USER": "contacts",
        "CRM_NATS_PASSWORD": (data / "nats_contacts_password").read_text(),
    }
    assert nats_env["admin"]["CRM_NATS_USER"] == "crm-admin"
    assert len({v["CRM_NATS_PASSWORD"] for v in nats_env.values()}) == len(nats_env)

    # Restart: the same passwords, the data is still there, and still nothing without them.
    env2, nats_env2, servers = devstack_runner._start_servers(data)
    try:
        assert (env2, nats_env2) == (env, nats_env)
        assert asyncio.run(_pg_read(env["CRM_DATABASE_URL"]))[0] == "ÄRGER"
        port = env["CRM_DATABASE_URL"].rsplit(":", 1)[1].split("/")[0]
        assert asyncio.run(_pg_refused(f"postgresql://postgres@127.0.0.1:{port}/postgres"))
        r = redis.Redis.from_url(env["CRM_REDIS_URL"])
        assert r.get("k") == b"v"
        r.close()
        admin = nats_env["admin"]
        assert (
            asyncio.run(
                _nats_connect_error(
                    env["CRM_NATS_URL"],
                    user=admin["CRM_NATS_USER"],
                    password=admin["CRM_NATS_PASSWORD"],
                )
            )
            is None
        )
        assert asyncio.run(_nats_connect_error(env["CRM_NATS_URL"])) is not None
    finally:
        for server in reversed(servers):
            server.stop()


def test_cli_operator_commands_read_make_runs_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`crm tenant …`/`migrate`/`streams` find the embedded servers' passwords in
    `<CRM_DEVSTACK_DIR>/env`; variables already set win."""
    from crm_lib.cli import operator_env as _operator_env

    (tmp_path / "env").write_text(
        "CRM_DATABASE_URL=postgresql://postgres:pw@127.0.0.1:1/postgres\n"
        "CRM_NATS_USER=crm-admin\nCRM_NATS_PASSWORD=nats-pw\nNOT_CRM=x\n"
    )
    monkeypatch.setenv("CRM_DEVSTACK_DIR", str(tmp_path))
    monkeypatch.setenv("CRM_NATS_USER", "mine")
    for var in ("CRM_DATABASE_URL", "CRM_NATS_PASSWORD", "NOT_CRM"):
        monkeypatch.setenv(var, "")  # recorded, so what _operator_env sets is undone
        monkeypatch.delenv(var)
    _operator_env()
    assert os.environ["CRM_DATABASE_URL"] == "postgresql://postgres:pw@127.0.0.1:1/postgres"
    assert os.environ["CRM_NATS_PASSWORD"] == "nats-pw"
    assert os.environ["CRM_NATS_USER"] == "mine"
    assert "NOT_CRM" not in os.environ
