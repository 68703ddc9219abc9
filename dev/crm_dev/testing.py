"""pytest plugin: real servers and a running platform for the test suites.

Session fixtures start embedded PostgreSQL, NATS JetStream and Redis on free
ports in a temporary directory (never the machine's own 5432/4222/6379), and
can run every service's worker in-process. Load with
``pytest_plugins = ["crm_dev.testing"]`` in the root ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from crm_dev.devstack import (
    EmbeddedNats,
    EmbeddedPostgres,
    EmbeddedRedis,
    new_password,
    service_nats_users,
)
from crm_lib.events import NATS_ADMIN_USER, connect_nats, ensure_streams
from crm_lib.registry import load_service
from crm_lib.service import (
    ServiceDefinition,
    ServiceRuntime,
    build_app,
    prepare_database,
    run_worker,
)
from crm_lib.settings import SERVICE_NAMES, PlatformSettings
from crm_lib.telemetry import setup_tracing


@dataclass
class ServerUrls:
    database_url: str
    nats_url: str
    redis_url: str


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def pg_server(servers_dir: Path) -> Iterator[EmbeddedPostgres]:
    """The session's PostgreSQL (a random superuser password, SCRAM).

    As root its cluster lives in a fresh directory right under the system temp dir, not in
    pytest's ``/tmp/pytest-of-<user>``: every pytest session starting on the host resets
    that to 0700, which would lock the unprivileged PostgreSQL user out of its own files.
    Its log is copied next to the other servers' at the end (the log scan reads it).
    """
    import os
    import shutil
    import tempfile

    private = Path(tempfile.mkdtemp(prefix="crm-test-pg-")) if os.geteuid() == 0 else None
    data_dir = (private or servers_dir) / "pg"
    try:
        with EmbeddedPostgres(data_dir, fast=True) as server:
            yield server
    finally:
        if private is not None:
            with contextlib.suppress(OSError):
                shutil.copyfile(data_dir / "postgres.log", servers_dir / "postgres.log")
            shutil.rmtree(private, ignore_errors=True)


@dataclass(frozen=True)
class NatsCredentials:
    """The test session's NATS users: one per service (``nats_permissions``) plus the admin.

    Settings of a service get that service's user (``make_settings``); anything else
    (``make_settings("tests")``, stream declarations, tests that forge or read dead letters)
    runs as the admin.
    """

    admin_password: str
    passwords: dict[str, str]

    def for_service(self, service: str) -> dict[str, Any]:
        """``nats_user`` / ``nats_password`` settings of ``service`` (admin for non-services)."""
        if service in self.passwords:
            return {"nats_user": service, "nats_password": SecretStr(self.passwords[service])}
        return {"nats_user": NATS_ADMIN_USER, "nats_password": SecretStr(self.admin_password)}

    def server(self, data_dir: Path, port: int | None = None) -> EmbeddedNats:
        """An (unstarted) embedded NATS that knows these users."""
        return EmbeddedNats(
            data_dir,
            port,
            users=service_nats_users(self.passwords),
            admin_user=NATS_ADMIN_USER,
            admin_password=self.admin_password,
        )


@pytest.fixture(scope="session")
def nats_credentials() -> NatsCredentials:
    return NatsCredentials(new_password(), {name: new_password() for name in SERVICE_NAMES})


@pytest.fixture(scope="session")
def nats_server(servers_dir: Path, nats_credentials: NatsCredentials) -> Iterator[EmbeddedNats]:
    with nats_credentials.server(servers_dir / "nats") as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(servers_dir: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(servers_dir / "redis") as server:
        yield server


@dataclass
class SmtpSink:
    """A real SMTP server (aiosmtpd) that keeps every message it receives."""

    host: str
    port: int
    messages: list[Any] = field(default_factory=list)

    def to(self, address: str) -> list[Any]:
        return [m for m in self.messages if address.lower() in str(m["To"]).lower()]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpSink]:
    from email import message_from_bytes
    from email.policy import default as default_policy

    from aiosmtpd.controller import Controller

    from crm_dev.devstack import free_port

    sink = SmtpSink("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            sink.messages.append(message_from_bytes(envelope.content, policy=default_policy))
            return "250 OK"

    controller = Controller(Handler(), hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    setup_tracing(PlatformSettings(service_name="tests"), exporter=exporter)
    return exporter


SettingsFactory = Callable[..., PlatformSettings]


@pytest.fixture(scope="session")
def make_settings(
    pg_server: EmbeddedPostgres,
    nats_server: EmbeddedNats,
    redis_server: EmbeddedRedis,
    nats_credentials: NatsCredentials,
) -> SettingsFactory:
    """Settings for a service pointing at the test servers (overrides as keywords).

    A service gets its own NATS user (it may publish only its own events); any other
    name (``"tests"``, ``"platform"``) gets the admin user.
    """

    def factory(service: str = "platform", **overrides: Any) -> PlatformSettings:
        values: dict[str, Any] = {
            "service_name": service,
            "database_url": pg_server.url,
            "nats_url": nats_server.url,
            **nats_credentials.for_service(service),
            "redis_url": redis_server.url,
            "log_json": True,
            "log_level": "WARNING",
            "consumer_backoff_seconds": (0.05, 0.1, 0.2),
            "outbox_poll_interval_seconds": 0.5,
        }
        values.update(overrides)
        settings_class = PlatformSettings
        if service in SERVICE_NAMES:
            settings_class = load_service(service).settings_class or PlatformSettings
        return settings_class(**values)

    return factory


async def eventually(
    probe: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll ``probe`` (sync or async) until it returns something truthy.

    Outcome-based waiting, never timing assertions.
    """
    import inspect
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value {last!r}")


def scratch_database_name(prefix: str = "scratch") -> str:
    return f"crm_{prefix}_{uuid.uuid4().hex[:10]}"


#: Base64 of 32 bytes: the contacts service's master key in tests (never a default).
TEST_MASTER_KEY = "dGVzdC1tYXN0ZXIta2V5LW9mLTMyLWJ5dGVzLWxvbmc="


@dataclass
class RunningPlatform:
    """All five services' workers running in this process, plus their runtimes."""

    runtimes: dict[str, ServiceRuntime]
    definitions: dict[str, ServiceDefinition]
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def runtime(self, service: str) -> ServiceRuntime:
        return self.runtimes[service]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform(
    make_settings: SettingsFactory, span_exporter: InMemorySpanExporter, smtp_server: SmtpSink
) -> AsyncIterator[RunningPlatform]:
    definitions = {name: load_service(name) for name in SERVICE_NAMES}
    runtimes: dict[str, ServiceRuntime] = {}
    for name, definition in definitions.items():
        extra: dict[str, Any] = {}
        if name == "identity":
            extra = {
                "smtp_host": smtp_server.host,
                "smtp_port": smtp_server.port,
                "operator_token": "test-operator-token",
            }
        elif name == "contacts":
            extra = {"contacts_master_key": TEST_MASTER_KEY}
        settings = make_settings(name, internal_token="test-internal-token", **extra)
        await prepare_database(definition, settings)
        runtimes[name] = ServiceRuntime(settings)
    nc = await connect_nats(make_settings("tests"))
    await ensure_streams(nc.jetstream())
    await nc.close()
    stop = asyncio.Event()
    running = RunningPlatform(runtimes, definitions, stop)
    readies = []
    for name, definition in definitions.items():
        ready = asyncio.Event()
        readies.append(ready)
        running.tasks.append(
            asyncio.create_task(
                run_worker(
                    definition, stop, runtimes[name].settings, runtime=runtimes[name], ready=ready
                )
            )
        )
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=60)
    yield running
    stop.set()
    for task in running.tasks:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, timeout=10)
    for rt in runtimes.values():
        await rt.close()


# --------------------------------------------------------------------------- in-process HTTP


class InProcessServer(uvicorn.Server):
    """uvicorn on the test's own event loop, without signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RunningServer:
    def __init__(self, server: InProcessServer, task: asyncio.Task[None], port: int) -> None:
        self.server = server
        self.task = task
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 10)


async def serve_app(app: Any) -> RunningServer:
    """Serve an ASGI app on a free port on the running loop (shares its pools).

    ``proxy_headers`` is off: uvicorn would otherwise trust ``X-Forwarded-For``
    from 127.0.0.1 (the test client) before the app sees it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        proxy_headers=False,
    )
    server = InProcessServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.01)
    return RunningServer(server, task, sock.getsockname()[1])


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[RunningServer]:
    running = await serve_app(app)
    try:
        yield running
    finally:
        await running.stop()


@dataclass
class PlatformStack:
    """Every service's web app served on its own port, plus the real gateway in front."""

    #: ``<service>_url`` -> the service's own address (a caller bypassing the gateway)
    service_urls: dict[str, str]
    #: where the servers are (identity's settings)
    platform_settings: PlatformSettings
    #: an HTTP client on the default gateway (set once it is up)
    gateway: httpx.AsyncClient = field(init=False)

    def gateway_settings(self, **overrides: Any) -> Any:
        """Settings for another gateway in front of the same services (``GatewaySettings``)."""
        from crm_gateway.settings import GatewaySettings

        return GatewaySettings.model_validate(
            {
                **self.service_urls,
                "redis_url": self.platform_settings.redis_url,
                "nats_url": self.platform_settings.nats_url,
                "database_url": self.platform_settings.database_url,
                "internal_token": "test-internal-token",
                "log_level": "WARNING",
                **overrides,
            }
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform_stack(platform: RunningPlatform) -> AsyncIterator[PlatformStack]:
    """The whole platform over HTTP: every service's web app, then the gateway."""
    from crm_gateway.app import create_app as create_gateway

    urls: dict[str, str] = {}
    servers = []
    # Identity first: the other services verify tokens with its JWKS.
    for name in sorted(SERVICE_NAMES, key=lambda n: n != "identity"):
        rt = platform.runtime(name)
        app_settings = rt.settings
        if name != "identity":
            app_settings = app_settings.model_copy(update={"identity_url": urls["identity_url"]})
        server = await serve_app(build_app(platform.definitions[name], app_settings, runtime=rt))
        servers.append(server)
        urls[f"{name}_url"] = server.url
    stack = PlatformStack(urls, platform.runtime("identity").settings)
    async with (
        served(create_gateway(stack.gateway_settings())) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=30) as client,
    ):
        stack.gateway = client
        yield stack
    for server in servers:
        await server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform_gateway(platform_stack: PlatformStack) -> httpx.AsyncClient:
    """An HTTP client on the real gateway in front of every service."""
    return platform_stack.gateway
