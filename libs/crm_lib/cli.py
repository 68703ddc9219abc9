"""``crm``: the operator and process CLI, driven by the same ``CRM_*`` settings.

crm up                     start the whole platform locally (what ``make run`` does)
crm serve <component>      one web process (gateway or a service)
crm worker <service>       one worker process (outbox relay + consumers)
crm migrate [--all|svc..]  create databases, platform tracks, upgrade tenant schemas
crm tenant create|list|show|delete|retry
"""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import sys
import time
import uuid
from typing import Annotated, Any

import typer

from crm_lib.settings import SERVICE_NAMES, SERVICE_PORTS

app = typer.Typer(help="CRM platform operator CLI", no_args_is_help=True, add_completion=False)
tenant_app = typer.Typer(help="Tenant registry operations", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")

COMPONENTS = ("gateway", *SERVICE_NAMES)


def _operator_env() -> None:
    """Defaults from ``make run``'s ``<CRM_DEVSTACK_DIR>/env`` (embedded servers' URLs with
    their passwords, the NATS admin user), for operator commands; set variables win."""
    import os
    from pathlib import Path

    path = Path(os.environ.get("CRM_DEVSTACK_DIR", ".devstack")) / "env"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.startswith("CRM_"):
            os.environ.setdefault(key, value)


def _check_component(name: str, allowed: tuple[str, ...]) -> str:
    if name not in allowed:
        raise typer.BadParameter(f"expected one of: {', '.join(allowed)}")
    return name


def _run_until_signal(main: Any) -> None:
    """Run ``main(stop_event)`` with SIGINT/SIGTERM setting the event."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


@app.command()
def serve(
    component: str,
    host: str = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="default: the component's local port")] = None,
    workers: int = 1,
) -> None:
    """Run the web process of the gateway or a service."""
    import uvicorn

    _check_component(component, COMPONENTS)
    target = f"crm_{component}.app:create_app"
    # Everything imported so far lives for the whole process: keep it out of the
    # collector, and collect the young generation less often. Full collections over
    # ~150k long-lived objects otherwise stall requests for 100+ ms under load.
    import gc

    importlib.import_module(f"crm_{component}.app")
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    uvicorn.run(
        target,
        factory=True,
        host=host,
        port=port or SERVICE_PORTS[component],
        workers=workers,
        lifespan="on",
        access_log=False,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def worker(service: str) -> None:
    """Run a service's worker: the outbox relay and its event consumers."""
    from crm_lib.registry import load_service
    from crm_lib.service import run_worker
    from crm_lib.telemetry import setup_logging, setup_tracing

    _check_component(service, SERVICE_NAMES)
    definition = load_service(service)
    settings = definition.settings()
    setup_logging(settings)
    setup_tracing(settings)
    _run_until_signal(lambda stop: run_worker(definition, stop, settings))


@app.command()
def migrate(
    services: Annotated[list[str] | None, typer.Argument(help="services (default: all)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every service")] = False,
    platform_only: bool = typer.Option(False, help="only databases and platform tracks"),
    concurrency: int | None = typer.Option(None, help="tenant schemas migrated in parallel"),
    streams_too: bool = typer.Option(
        False, "--streams", help="then declare the streams and export bucket (NATS admin)"
    ),
) -> None:
    """Create service databases, upgrade platform tracks, then every lagging tenant schema."""
    from crm_lib.migrations import migrate_tenants
    from crm_lib.registry import load_service
    from crm_lib.service import prepare_database

    _operator_env()
    names = list(SERVICE_NAMES) if all_ or not services else services
    for name in names:
        _check_component(name, SERVICE_NAMES)

    async def main() -> int:
        failures = 0
        for name in names:
            definition = load_service(name)
            settings = definition.settings()
            await prepare_database(definition, settings)
            typer.echo(f"{name}: platform tracks at head")
            if platform_only:
                continue
            report = await migrate_tenants(
                settings, definition.schema.tenant_track, concurrency=concurrency
            )
            typer.echo(
                f"{name}: {len(report.succeeded)} tenant schemas upgraded to {report.head}, "
                f"{len(report.failed)} failed in {report.seconds:.2f}s"
            )
            for failed in report.failed:
                typer.echo(f"  FAILED {failed.tenant_id}: {failed.error}", err=True)
            failures += len(report.failed)
        return failures

    failures = asyncio.run(main())
    if streams_too:
        streams()
    if failures:
        typer.echo(f"{failures} tenant schema(s) failed; fix them and rerun to resume", err=True)
        raise typer.Exit(1)


@app.command()
def streams() -> None:
    """Declare the JetStream streams (events, dead letters) and the export bucket.

    Needs the NATS admin user (``CRM_NATS_USER``/``CRM_NATS_PASSWORD``): services' own
    users may not create or change streams."""
    from crm_lib.events import connect_nats, ensure_streams
    from crm_lib.settings import settings_for

    _operator_env()

    async def main() -> None:
        nc = await connect_nats(settings_for("platform"), wait=False)
        try:
            await ensure_streams(nc.jetstream())
        finally:
            await nc.close()

    asyncio.run(main())
    typer.echo("streams ready")


# --------------------------------------------------------------------------- tenants


def _identity() -> Any:
    from crm_lib.registry import load_service
    from crm_lib.tenancy import Database

    _operator_env()
    definition = load_service("identity")
    settings = definition.settings()
    return settings, Database(settings, pool_size=2, max_overflow=0)


def _print(obj: Any) -> None:
    import msgspec

    typer.echo(json.dumps(msgspec.to_builtins(obj), indent=2, default=str))


async def _resolve(session: Any, ref: str) -> uuid.UUID:
    from crm_identity.tenants.repository import TenantRepository

    try:
        return uuid.UUID(ref)
    except ValueError:
        tenant = await TenantRepository(session).get_by_slug(ref)
        if tenant is None:
            raise typer.BadParameter(f"no tenant {ref!r}") from None
        return tenant.id


async def _wait_for(
    db: Any, settings: Any, tenant_id: uuid.UUID, wanted: set[str], timeout: float
) -> Any:
    from crm_identity.tenants.service import TenantService

    deadline = time.monotonic() + timeout
    while True:
        async with db.platform_session() as session:
            tenant = await TenantService(session, settings.provisioning_services).get(tenant_id)
        if tenant.status in wanted or time.monotonic() > deadline:
            return tenant
        await asyncio.sleep(0.1)


@tenant_app.command("create")
def tenant_create(
    name: str,
    slug: str,
    plan: str = "free",
    wait: bool = typer.Option(True, help="wait until every service has provisioned it"),
    timeout: float = 30.0,
) -> None:
    """Create a tenant and start the provisioning saga."""
    import msgspec

    from crm_identity.tenants.schemas import TenantCreate
    from crm_identity.tenants.service import TenantService
    from crm_lib.http import ProblemError

    try:
        data = msgspec.convert({"name": name, "slug": slug, "plan": plan}, TenantCreate)
    except msgspec.ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc

    async def main() -> Any:
        settings, db = _identity()
        try:
            async with db.platform_session() as session:
                tenant = await TenantService(session, settings.provisioning_services).create(
                    data, actor="cli"
                )
            if not wait:
                async with db.platform_session() as session:
                    return await TenantService(session, settings.provisioning_services).get(
                        tenant.id
                    )
            return await _wait_for(
                db, settings, tenant.id, {"active", "provisioning_failed"}, timeout
            )
        finally:
            await db.dispose()

    try:
        _print(asyncio.run(main()))
    except ProblemError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


@tenant_app.command("list")
def tenant_list(status: str | None = None, limit: int = 100) -> None:
    """List tenants (optionally by status)."""
    from crm_identity.tenants.repository import TenantRepository
    from crm_identity.tenants.service import to_schema

    async def main() -> list[Any]:
        _settings, db = _identity()
        try:
            async with db.platform_session() as session:
                rows = await TenantRepository(session).page(limit, None, status)
                return [to_schema(t) for t in rows]
        finally:
            await db.dispose()

    for tenant in asyncio.run(main()):
        typer.echo(f"{tenant.id}  {tenant.status:<20} {tenant.slug:<30} {tenant.name}")


@tenant_app.command("show")
def tenant_show(ref: str) -> None:
    """Show one tenant (id or slug) with every service's saga state."""
    from crm_identity.tenants.service import TenantService

    async def main() -> Any:
        settings, db = _identity()
        try:
            async with db.platform_session() as session:
                tenant_id = await _resolve(session, ref)
                return await TenantService(session, settings.provisioning_services).get(tenant_id)
        finally:
            await db.dispose()

    _print(asyncio.run(main()))


def _tenant_action(ref: str, action: str, wait_states: set[str] | None, timeout: float) -> None:
    from crm_identity.tenants.service import TenantService
    from crm_lib.http import ProblemError

    async def main() -> Any:
        settings, db = _identity()
        try:
            async with db.platform_session() as session:
                tenant_id = await _resolve(session, ref)
                svc = TenantService(session, settings.provisioning_services)
                await getattr(svc, action)(tenant_id, actor="cli")
            if wait_states:
                return await _wait_for(db, settings, tenant_id, wait_states, timeout)
            async with db.platform_session() as session:
                return await TenantService(session, settings.provisioning_services).get(tenant_id)
        finally:
            await db.dispose()

    try:
        _print(asyncio.run(main()))
    except ProblemError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


@tenant_app.command("delete")
def tenant_delete(ref: str, wait: bool = True, timeout: float = 60.0) -> None:
    """Delete a tenant: every service drops its schema; the registry keeps it as deleted."""
    _tenant_action(ref, "request_deletion", {"deleted"} if wait else None, timeout)


@tenant_app.command("retry")
def tenant_retry(ref: str, wait: bool = True, timeout: float = 30.0) -> None:
    """Retry a failed or stuck provisioning (safe to repeat)."""
    _tenant_action(
        ref, "retry_provisioning", {"active", "provisioning_failed"} if wait else None, timeout
    )


@app.command()
def up(
    data_dir: str = typer.Option(".devstack", envvar="CRM_DEVSTACK_DIR"),
    ready_timeout: float = 90.0,
) -> None:
    """Start the whole platform locally on embedded (or configured external) servers."""
    from crm_lib.devstack_runner import run_devstack

    sys.exit(run_devstack(data_dir, ready_timeout))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
