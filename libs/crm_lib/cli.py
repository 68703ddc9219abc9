"""``crm``: the operator and process CLI, driven by the same ``CRM_*`` settings.

crm up                     start the whole platform locally (what ``make run`` does)
crm serve <component>      one web process (gateway or a service)
crm worker <service>       one worker process (outbox relay + consumers)
crm migrate [--all|svc..]  create databases, platform tracks, upgrade tenant schemas
crm streams                declare the JetStream streams (NATS admin)

Commands of installed plugins (entry-point group ``crm.cli``: a ``register(app)`` callable) are
added too: the workspace's development package ``crm_dev`` adds ``crm up`` and
``crm tenant create|list|show|delete|retry`` (see ``crm_dev.cli``).
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from typing import Annotated, Any

import typer

from crm_lib.settings import SERVICE_NAMES, SERVICE_PORTS

app = typer.Typer(help="CRM platform operator CLI", no_args_is_help=True, add_completion=False)

COMPONENTS = ("gateway", *SERVICE_NAMES)


def operator_env() -> None:
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

    operator_env()
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

    operator_env()

    async def main() -> None:
        nc = await connect_nats(settings_for("platform"), wait=False)
        try:
            await ensure_streams(nc.jetstream())
        finally:
            await nc.close()

    asyncio.run(main())
    typer.echo("streams ready")


#: Entry-point group of ``crm`` plugins: each names a ``register(app: typer.Typer)`` callable.
PLUGIN_GROUP = "crm.cli"


def load_plugins() -> None:
    """Add the commands of every installed ``crm.cli`` plugin (e.g. ``crm_dev``) to ``app``."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        entry.load()(app)


def main() -> None:
    load_plugins()
    app()


if __name__ == "__main__":
    main()
