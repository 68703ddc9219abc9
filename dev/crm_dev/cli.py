"""The ``crm`` command's development commands (``crm up``, ``crm tenant ...``).

They are not in the runtime library: ``crm up`` runs the embedded servers, and the tenant
commands use identity's tenant registry code directly (the runtime ``crm_lib`` imports no
service). ``crm_lib.cli`` adds them to the ``crm`` command through the ``crm.cli`` entry-point
group when this package is installed (the workspace's dev group installs it; a service image
does not, and operates tenants through identity's ``/internal/v1/tenants`` endpoints).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

import typer

from crm_lib.cli import operator_env

tenant_app = typer.Typer(help="Tenant registry operations", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """The ``crm.cli`` entry point: add ``up`` and ``tenant`` to the ``crm`` command."""
    app.command()(up)
    app.add_typer(tenant_app, name="tenant")


def _identity() -> Any:
    from crm_lib.registry import load_service
    from crm_lib.tenancy import Database

    operator_env()
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


def up(
    data_dir: str = typer.Option(".devstack", envvar="CRM_DEVSTACK_DIR"),
    ready_timeout: float = 90.0,
) -> None:
    """Start the whole platform locally on embedded (or configured external) servers."""
    from crm_dev.devstack_runner import run_devstack

    sys.exit(run_devstack(data_dir, ready_timeout))
