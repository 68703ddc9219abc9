"""Internal endpoints for platform processes (gateway) and operators; not routed publicly."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import Body

from crm_identity.api_keys import schemas as key_schemas
from crm_identity.api_keys.service import resolve_api_key
from crm_identity.components import identity_of
from crm_identity.guards import internal_guard, operator_guard
from crm_identity.plans import get_plan
from crm_identity.tenants.repository import TenantRepository
from crm_lib.http import ProblemError
from crm_lib.service import ServiceRuntime


class TenantLimits(msgspec.Struct):
    requests_per_minute: int
    tenant_requests_per_minute: int


class TenantAccess(msgspec.Struct):
    tenant_id: uuid.UUID
    status: str
    plan: str
    limits: TenantLimits


class InternalController(Controller):
    path = "/internal/v1"
    guards = [internal_guard]
    tags = ["internal"]
    include_in_schema = False

    @post("/api-keys/resolve", status_code=200)
    async def resolve(
        self, data: key_schemas.ResolveRequest, runtime: ServiceRuntime
    ) -> key_schemas.Resolved:
        return await resolve_api_key(runtime.db, identity_of(runtime).keys, data.key)

    @get("/tenants/{tenant_id:uuid}/access")
    async def access(self, tenant_id: uuid.UUID, runtime: ServiceRuntime) -> TenantAccess:
        async with runtime.db.platform_session() as session:
            tenant = await TenantRepository(session).get(tenant_id)
        if tenant is None:
            raise ProblemError(404, "No such tenant.")
        plan = get_plan(tenant.plan)
        return TenantAccess(
            tenant.id,
            tenant.status,
            tenant.plan,
            TenantLimits(plan.requests_per_minute, plan.tenant_requests_per_minute),
        )


class KeyRotationController(Controller):
    path = "/internal/v1/keys"
    guards = [operator_guard]
    tags = ["internal"]
    include_in_schema = False

    @post("/rotate", status_code=200)
    async def rotate(
        self, runtime: ServiceRuntime, data: Annotated[dict[str, str] | None, Body()] = None
    ) -> dict[str, str]:
        kid = await identity_of(runtime).keys.rotate()
        return {"kid": kid}
