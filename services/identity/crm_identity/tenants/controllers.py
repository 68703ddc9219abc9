"""The tenant: the caller's own (``/api/v1/tenant``, through the gateway) and the operator's
registry endpoints (``/internal/v1/tenants``, not routed by the public gateway)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, post
from litestar.params import Body, Parameter

from crm_identity.components import identity_of
from crm_identity.guards import operator_guard
from crm_identity.settings import IdentitySettings
from crm_identity.tenants import schemas
from crm_identity.tenants.repository import TenantRepository
from crm_identity.tenants.service import TenantService, to_schema
from crm_identity.web import API
from crm_lib.auth import Principal
from crm_lib.pagination import decode_cursor, encode_cursor
from crm_lib.service import ServiceRuntime


class TenantApiController(Controller):
    path = f"{API}/tenant"
    tags = ["tenant"]

    @get(
        "/",
        summary="The caller's tenant: status (provisioning → active), plan and seats",
        description=(
            "`seats` (usage) only for owners and admins, or API keys/OAuth clients with "
            "the scope `seats:read`; `null` for everyone else."
        ),
    )
    async def current(self, principal: Principal, runtime: ServiceRuntime) -> schemas.CurrentTenant:
        settings = identity_of(runtime).settings
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TenantService(session, settings.provisioning_services).current(principal)

    @delete("/", status_code=202, summary="Request deletion of the whole tenant (owner only)")
    async def request_deletion(
        self,
        data: Annotated[schemas.TenantDeletion, Body()],
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> schemas.Tenant:
        settings = identity_of(runtime).settings
        async with runtime.db.platform_session() as session:
            svc = TenantService(session, settings.provisioning_services)
            await svc.request_own_deletion(principal, data.confirm_slug)
            return await svc.get(principal.tenant_id)


class TenantController(Controller):
    path = "/internal/v1/tenants"
    guards = [operator_guard]
    tags = ["tenants (operator)"]

    @post("/", status_code=201)
    async def create_tenant(
        self, data: schemas.TenantCreate, runtime: ServiceRuntime
    ) -> schemas.Tenant:
        settings: IdentitySettings = runtime.settings  # type: ignore[assignment]
        async with runtime.db.platform_session() as session:
            svc = TenantService(session, settings.provisioning_services)
            tenant = await svc.create(data, actor="operator")
            return await svc.get(tenant.id)

    @get("/")
    async def list_tenants(
        self,
        runtime: ServiceRuntime,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: str | None = None,
        status: str | None = None,
    ) -> schemas.TenantPage:
        after = decode_cursor(cursor, uuid.UUID)[0] if cursor else None
        async with runtime.db.platform_session() as session:
            rows = await TenantRepository(session).page(limit + 1, after, status)
        more = len(rows) > limit
        rows = rows[:limit]
        return schemas.TenantPage(
            data=[to_schema(t) for t in rows],
            next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
        )

    @get("/{tenant_id:uuid}")
    async def get_tenant(self, tenant_id: uuid.UUID, runtime: ServiceRuntime) -> schemas.Tenant:
        settings: IdentitySettings = runtime.settings  # type: ignore[assignment]
        async with runtime.db.platform_session() as session:
            return await TenantService(session, settings.provisioning_services).get(tenant_id)

    @post("/{tenant_id:uuid}/retry", status_code=202)
    async def retry_provisioning(
        self, tenant_id: uuid.UUID, runtime: ServiceRuntime
    ) -> schemas.Tenant:
        settings: IdentitySettings = runtime.settings  # type: ignore[assignment]
        async with runtime.db.platform_session() as session:
            svc = TenantService(session, settings.provisioning_services)
            await svc.retry_provisioning(tenant_id, actor="operator")
            return await svc.get(tenant_id)

    @delete("/{tenant_id:uuid}", status_code=202)
    async def delete_tenant(
        self, tenant_id: uuid.UUID, runtime: ServiceRuntime
    ) -> Response[schemas.Tenant]:
        settings: IdentitySettings = runtime.settings  # type: ignore[assignment]
        async with runtime.db.platform_session() as session:
            svc = TenantService(session, settings.provisioning_services)
            await svc.request_deletion(tenant_id, actor="operator")
            tenant = await svc.get(tenant_id)
        return Response(tenant, status_code=202)
