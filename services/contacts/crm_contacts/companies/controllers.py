"""Companies API (``/api/v1/companies``): HTTP only, one transaction per request."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post

from crm_contacts.companies import schemas
from crm_contacts.companies.service import CompanyService
from crm_contacts.contacts.controllers import BulkReassign, IfMatch
from crm_contacts.contacts.service import ContactService
from crm_contacts.records.http import flag, list_query, record_context
from crm_contacts.tags.schemas import BulkResult, BulkTag
from crm_lib.auth import Principal
from crm_lib.http import if_match_version
from crm_lib.pagination import Page
from crm_lib.service import ServiceRuntime

PATH = "/api/v1/companies"


class CompanyController(Controller):
    path = PATH
    tags = ["companies"]

    @get("/", summary="List or search companies")
    async def list_companies(
        self, request: Request[Any, Any, Any], principal: Principal, runtime: ServiceRuntime
    ) -> Page[dict[str, Any]]:
        query = list_query(request)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = CompanyService(session, await record_context(session, principal, runtime))
            return await svc.page(query)

    @post("/", status_code=201, summary="Create a company (409 on a known domain)")
    async def create_company(
        self,
        data: schemas.CompanyCreate,
        request: Request[Any, Any, Any],
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> Response[dict[str, Any]]:
        allow = flag(request, "allow_duplicate")
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = CompanyService(session, await record_context(session, principal, runtime))
            view = await svc.view(await svc.create(data, allow_duplicate=allow))
        return Response(
            view,
            status_code=201,
            headers={"Location": f"{PATH}/{view['id']}", "ETag": f'"{view["version"]}"'},
        )

    @get("/{company_id:uuid}", summary="One company")
    async def get_company(
        self, company_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> Response[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = CompanyService(session, await record_context(session, principal, runtime))
            view = await svc.view(await svc.visible(company_id))
        return Response(view, headers={"ETag": f'"{view["version"]}"'})

    @patch("/{company_id:uuid}", summary="Change a company (If-Match → 412 if stale)")
    async def update_company(
        self,
        company_id: uuid.UUID,
        data: schemas.CompanyUpdate,
        principal: Principal,
        runtime: ServiceRuntime,
        if_match: IfMatch = None,
    ) -> Response[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = CompanyService(session, await record_context(session, principal, runtime))
            view = await svc.view(await svc.update(company_id, data, if_match_version(if_match)))
        return Response(view, headers={"ETag": f'"{view["version"]}"'})

    @delete("/{company_id:uuid}", status_code=204, summary="Delete a company")
    async def delete_company(
        self,
        company_id: uuid.UUID,
        principal: Principal,
        runtime: ServiceRuntime,
        if_match: IfMatch = None,
    ) -> None:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = CompanyService(session, await record_context(session, principal, runtime))
            await svc.delete(company_id, if_match_version(if_match))

    @get("/{company_id:uuid}/contacts", summary="Contacts linked to the company (visible ones)")
    async def company_contacts(
        self,
        company_id: uuid.UUID,
        request: Request[Any, Any, Any],
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> Page[dict[str, Any]]:
        query = list_query(request)
        query.filters.append(("company_id", "eq", str(company_id)))
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            ctx = await record_context(session, principal, runtime)
            await CompanyService(session, ctx).visible(company_id)
            return await ContactService(session, ctx).page(query)

    @post("/bulk/tags", status_code=200, summary="Tag or untag many companies")
    async def bulk_tags(
        self, data: BulkTag, principal: Principal, runtime: ServiceRuntime
    ) -> BulkResult:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = CompanyService(session, await record_context(session, principal, runtime))
            updated, skipped = await svc.bulk_tags(data.ids, data.tags, data.action)
        return BulkResult(updated, skipped)

    @post("/bulk/reassign", status_code=200, summary="Give many companies a new owner (audited)")
    async def bulk_reassign(
        self, data: BulkReassign, principal: Principal, runtime: ServiceRuntime
    ) -> BulkResult:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = CompanyService(session, await record_context(session, principal, runtime))
            updated, skipped = await svc.reassign(data.ids, data.owner_id)
        return BulkResult(updated, skipped)
