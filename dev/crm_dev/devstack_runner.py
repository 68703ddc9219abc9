"""``crm up`` / ``make run``: the whole platform on one machine.

Starts embedded PostgreSQL, NATS JetStream and Redis under the data folder
(unless ``CRM_DATABASE_URL`` / ``CRM_NATS_URL`` / ``CRM_REDIS_URL`` point at
external servers), prepares every service database and the streams, then runs
the gateway and the five services (web + worker each) as separate processes,
waits until every ``/health/ready`` is green and prints the URLs. Ctrl-C stops
the processes, then the servers; data stays for the next run.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from crm_lib.settings import SERVICE_NAMES, SERVICE_PORTS

# Fixed local ports away from the machine's standard 5432/4222/6379.
DEFAULT_PG_PORT = 55432
DEFAULT_NATS_PORT = 54222
DEFAULT_REDIS_PORT = 56379


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path


def _say(message: str) -> None:
    print(message, flush=True)


#: The operator's connection settings for the embedded servers (admin NATS user, database
#: and Redis URLs with their passwords), read by ``crm`` operator commands (``cli.py``).
OPERATOR_ENV_FILE = "env"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def _start_servers(data: Path) -> tuple[dict[str, str], dict[str, dict[str, str]], list[Any]]:
    """Embedded servers for whatever no ``CRM_*_URL`` points at.

    Returns the shared env (URLs; the database and Redis ones carry their passwords), the
    per-process NATS credentials (``"admin"`` and each service: ``CRM_NATS_USER`` /
    ``CRM_NATS_PASSWORD``; empty when NATS is external: then the environment's own apply)
    and the started servers. Passwords are generated once and kept in the data folder.
    """
    from crm_dev.devstack import (
        EmbeddedNats,
        EmbeddedPostgres,
        EmbeddedRedis,
        new_password,
        service_nats_users,
    )
    from crm_lib.events import NATS_ADMIN_USER, redact_url

    env: dict[str, str] = {}
    nats_env: dict[str, dict[str, str]] = {}
    started: list[Any] = []
    passwords: dict[str, str] = {}
    admin_password = ""

    def port(key: str, default: int) -> int:
        return int(os.environ.get(f"CRM_DEVSTACK_{key}_PORT", default))

    def launch(label: str, url_var: str, folder: str, make: Callable[[], Any]) -> None:
        if os.environ.get(url_var):
            env[url_var] = os.environ[url_var]
            _say(f"{label + ':':<11} external {redact_url(env[url_var])}")
            return
        server = make()
        server.start()
        started.append(server)
        env[url_var] = server.url
        _say(f"{label + ':':<11} embedded {redact_url(server.url)} (data in {data / folder})")

    launch(
        "PostgreSQL",
        "CRM_DATABASE_URL",
        "postgres",
        lambda: EmbeddedPostgres(
            data / "postgres",
            port=port("PG", DEFAULT_PG_PORT),
            password=_secret(data, "", "postgres_password", new_password),
        ),
    )
    if not os.environ.get("CRM_NATS_URL"):
        passwords = {
            name: _secret(data, "", f"nats_{name}_password", new_password) for name in SERVICE_NAMES
        }
        admin_password = _secret(data, "", "nats_admin_password", new_password)
        nats_env = {
            name: {"CRM_NATS_USER": name, "CRM_NATS_PASSWORD": pw} for name, pw in passwords.items()
        }
        nats_env["admin"] = {"CRM_NATS_USER": NATS_ADMIN_USER, "CRM_NATS_PASSWORD": admin_password}
    launch(
        "NATS",
        "CRM_NATS_URL",
        "nats",
        lambda: EmbeddedNats(
            data / "nats",
            port=port("NATS", DEFAULT_NATS_PORT),
            users=service_nats_users(passwords),
            admin_user=NATS_ADMIN_USER,
            admin_password=admin_password,
        ),
    )
    launch(
        "Redis",
        "CRM_REDIS_URL",
        "redis",
        lambda: EmbeddedRedis(
            data / "redis",
            port=port("REDIS", DEFAULT_REDIS_PORT),
            password=_secret(data, "", "redis_password", new_password),
        ),
    )
    return env, nats_env, started


def _secret(
    data: Path, env_var: str, filename: str, generate: Callable[[], str] | None = None
) -> str:
    """A secret from the environment, or one generated once and kept in the data folder."""
    if env_var and (token := os.environ.get(env_var)):
        return token
    path = data / filename
    if not path.exists():
        _write_private(path, (generate or (lambda: secrets.token_urlsafe(32)))())
    return path.read_text().strip()


def _start_mail_sink(data: Path) -> tuple[dict[str, str], Any]:
    """Unless CRM_SMTP_HOST is set, catch outgoing mail into .devstack/mail/*.eml."""
    if os.environ.get("CRM_SMTP_HOST"):
        return {}, None
    try:
        from aiosmtpd.controller import Controller
    except ImportError:  # dev dependency missing: identity logs emails instead
        return {}, None
    from crm_dev.devstack import free_port

    outbox = data / "mail"
    outbox.mkdir(parents=True, exist_ok=True)

    class Handler:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.eml"
            (outbox / name).write_bytes(envelope.content)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    _say(f"Mail:       caught into {outbox}")
    return {"CRM_SMTP_HOST": "127.0.0.1", "CRM_SMTP_PORT": str(port)}, controller


async def _prepare() -> None:
    from crm_lib.events import connect_nats, ensure_streams
    from crm_lib.migrations import migrate_tenants
    from crm_lib.registry import load_service
    from crm_lib.service import prepare_database
    from crm_lib.settings import settings_for

    for name in SERVICE_NAMES:
        definition = load_service(name)
        settings = definition.settings()
        await prepare_database(definition, settings)
        # Bring existing tenants' schemas to head (a no-op query when nothing lags).
        report = await migrate_tenants(settings, definition.schema.tenant_track, concurrency=1)
        if report.results:
            _say(
                f"{name}: upgraded {len(report.succeeded)} tenant schema(s), "
                f"{len(report.failed)} failed"
            )
        for failed in report.failed:
            _say(f"!! {name}: tenant {failed.tenant_id} failed to migrate: {failed.error}")
    nc = await connect_nats(settings_for("platform"), wait=False)
    try:
        await ensure_streams(nc.jetstream())
    finally:
        await nc.close()


def _write_operator_env(
    data: Path,
    server_env: dict[str, str],
    nats_env: dict[str, dict[str, str]],
    env: dict[str, str],
) -> None:
    """``.devstack/env`` (0600): what ``crm tenant …`` / ``crm migrate`` / ``crm streams``
    need to reach the embedded servers (they load it when present; the environment wins)."""
    values = {
        **server_env,
        **nats_env.get("admin", {}),
        "CRM_OPERATOR_TOKEN": env["CRM_OPERATOR_TOKEN"],
        "CRM_INTERNAL_TOKEN": env["CRM_INTERNAL_TOKEN"],
    }
    lines = [f"{k}={v}" for k, v in sorted(values.items())]
    _write_private(data / OPERATOR_ENV_FILE, "\n".join(lines) + "\n")


def _spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> Child:
    log_path = logs / f"{name}.log"
    log = log_path.open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "crm_lib.cli", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Child(name, process, log, log_path)


def _wait_ready(children: list[Child], timeout: float) -> bool:
    urls = {
        c: f"http://127.0.0.1:{SERVICE_PORTS[c]}/health/ready" for c in ("gateway", *SERVICE_NAMES)
    }
    pending = dict(urls)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while pending and time.monotonic() < deadline:
            for child in children:
                if child.process.poll() is not None:
                    code = child.process.returncode
                    _say(f"!! {child.name} exited with {code}; see {child.log_path}")
                    return False
            for name, url in list(pending.items()):
                try:
                    if client.get(url).status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
    if pending:
        _say(f"!! not ready after {timeout:.0f}s: {', '.join(pending)}")
    return not pending


def _stop_children(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
        child.log.close()


def run_devstack(data_dir: str, ready_timeout: float) -> int:
    data = Path(data_dir).resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stop_requested = False

    def on_signal(_sig: int, _frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    data.chmod(0o700)  # passwords and tokens live here
    server_env, nats_env, servers = _start_servers(data)
    children: list[Child] = []
    mail_sink: Any = None
    code = 0
    try:
        mail_env, mail_sink = _start_mail_sink(data)
        env = {
            **{k: v for k, v in os.environ.items() if not (nats_env and k.startswith("CRM_NATS_"))},
            **server_env,
            **mail_env,
            "CRM_OPERATOR_TOKEN": _secret(data, "CRM_OPERATOR_TOKEN", "operator_token"),
            "CRM_INTERNAL_TOKEN": _secret(data, "CRM_INTERNAL_TOKEN", "internal_token"),
            # Wraps each tenant's key for sensitive contact fields (base64 of 32 bytes).
            "CRM_CONTACTS_MASTER_KEY": _secret(
                data,
                "CRM_CONTACTS_MASTER_KEY",
                "contacts_master_key",
                lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
            ),
        }
        # This process prepares databases and streams as the NATS admin; every service
        # process runs as its own NATS user; the gateway needs no NATS user.
        os.environ.update(server_env)
        os.environ.update(nats_env.get("admin", {}))
        _write_operator_env(data, server_env, nats_env, env)
        asyncio.run(_prepare())
        _say("Databases, platform migrations and streams ready.")
        for name in SERVICE_NAMES:
            service_env = {**env, **nats_env.get(name, {})}
            children.append(_spawn(name, ["serve", name], service_env, logs))
            children.append(_spawn(f"{name}-worker", ["worker", name], service_env, logs))
        children.append(_spawn("gateway", ["serve", "gateway"], env, logs))
        if not _wait_ready(children, ready_timeout):
            return 1
        _say("")
        _say("CRM platform is up:")
        _say(
            f"  gateway      http://127.0.0.1:{SERVICE_PORTS['gateway']}  "
            f"(OpenAPI: /api/v1/openapi.json)"
        )
        metrics_port = os.environ.get("CRM_METRICS_PORT", "9464")
        _say(f"  gateway      http://127.0.0.1:{metrics_port}/metrics  (Prometheus, not public)")
        for name in SERVICE_NAMES:
            _say(
                f"  {name:<12} http://127.0.0.1:{SERVICE_PORTS[name]}  "
                f"(/health/ready, /metrics, /openapi/openapi.json)"
            )
        _say(f"  logs         {logs}")
        _say(
            f"  operator     token in {data / 'operator_token'} "
            "(Authorization: Bearer <token> on identity /internal/v1/tenants)"
        )
        _say(
            f"  credentials  {data / OPERATOR_ENV_FILE} (database, Redis, NATS admin; "
            "`uv run crm tenant …` reads it)"
        )
        signup_body = (
            '{"company_name":"Acme","admin_name":"Ada",'
            '"email":"ada@acme-example.com","password":"Correct-Horse-42"}'
        )
        _say(
            "  sign up      curl -s localhost:8000/api/v1/signup "
            f"-H 'content-type: application/json' -d '{signup_body}'"
        )
        _say("  or           uv run crm tenant create 'Acme Inc' acme")
        _say("Press Ctrl-C to stop.")
        while not stop_requested:
            for child in children:
                if child.process.poll() is not None:
                    _say(
                        f"!! {child.name} exited with {child.process.returncode}; "
                        f"see {child.log_path}"
                    )
                    code = 1
                    stop_requested = True
            time.sleep(0.5)
        return code
    finally:
        _say("Stopping...")
        _stop_children(children)
        if mail_sink is not None:
            mail_sink.stop()
        for server in reversed(servers):
            server.stop()
        _say("Stopped. Data kept in " + str(data))
