"""Contacts API (``/api/v1/contacts``): HTTP only, one transaction per request."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.params import Parameter

from crm_contacts.companies.schemas import CompanyLink
from crm_contacts.contacts import schemas
from crm_contacts.contacts.service import ContactService
from crm_contacts.records.http import flag, list_query, record_context
from crm_contacts.tags.schemas import BulkResult, BulkTag
from crm_lib.auth import Principal
from crm_lib.http import if_match_version
from crm_lib.pagination import Page
from crm_lib.service import ServiceRuntime

PATH = "/api/v1/contacts"
IfMatch = Annotated[str | None, Parameter(header="If-Match", required=False)]


class BulkReassign(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=1000)]
    owner_id: uuid.UUID


def _etag(view: dict[str, Any]) -> dict[str, str]:
    return {"ETag": f'"{view["version"]}"'}


class ContactController(Controller):
    path = PATH
    tags = ["contacts"]

    @get("/", summary="List or search contacts (filters, sort, fields, q)")
    async def list_contacts(
        self, request: Request[Any, Any, Any], principal: Principal, runtime: ServiceRuntime
    ) -> Page[dict[str, Any]]:
        query = list_query(request)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ContactService(session, await record_context(session, principal, runtime))
            return await svc.page(query)

    @post("/", status_code=201, summary="Create a contact (409 on a likely duplicate)")
    async def create_contact(
        self,
        data: schemas.ContactCreate,
        request: Request[Any, Any, Any],
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> Response[dict[str, Any]]:
        allow = flag(request, "allow_duplicate")
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ContactService(session, await record_context(session, principal, runtime))
            view = await svc.view(await svc.create(data, allow_duplicate=allow))
        return Response(
            view, status_code=201, headers={"Location": f"{PATH}/{view['id']}", **_etag(view)}
        )

    @get("/{contact_id:uuid}", summary="One contact")
    async def get_contact(
        self,
        contact_id: uuid.UUID,
        request: Request[Any, Any, Any],
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> Response[dict[str, Any]]:
        fields = request.query_params.get("fields")
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ContactService(session, await record_context(session, principal, runtime))
            chosen = svc.check_fields(fields.split(",") if fields else None)
            view = (await svc.views([await svc.visible(contact_id)], chosen))[0]
        return Response(view, headers=_etag(view))

    @patch("/{contact_id:uuid}", summary="Change a contact (If-Match: version → 412 if stale)")
    async def update_contact(
        self,
        contact_id: uuid.UUID,
        data: schemas.ContactUpdate,
        principal: Principal,
        runtime: ServiceRuntime,
        if_match: IfMatch = None,
    ) -> Response[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ContactService(session, await record_context(session, principal, runtime))
            row = await svc.update(contact_id, data, if_match_version(if_match))
            view = await svc.view(row)
        return Response(view, headers=_etag(view))

    @delete("/{contact_id:uuid}", status_code=204, summary="Delete a contact")
    async def delete_contact(
        self,
        contact_id: uuid.UUID,
        principal: Principal,
        runtime: ServiceRuntime,
        if_match: IfMatch = None,
    ) -> None:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ContactService(session, await record_context(session, principal, runtime))
            await svc.delete(contact_id, if_match_version(if_match))

    @post("/bulk/tags", status_code=200, summary="Tag or untag many contacts")
    async def bulk_tags(
        self, data: BulkTag, principal: Principal, runtime: ServiceRuntime
    ) -> BulkResult:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ContactService(session, await record_context(session, principal, runtime))
            updated, skipped = await svc.bulk_tags(data.ids, data.tags, data.action)
        return BulkResult(updated, skipped)

    @post("/bulk/reassign", status_code=200, summary="Give many contacts a new owner (audited)")
    async def bulk_reassign(
        self, data: BulkReassign, principal: Principal, runtime: ServiceRuntime
    ) -> BulkResult:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ContactService(session, await record_context(session, principal, runtime))
            updated, skipped = await svc.reassign(data.ids, data.owner_id)
        return BulkResult(updated, skipped)

    @get("/{contact_id:uuid}/companies", summary="Companies the contact is linked to")
    async def list_links(
        self, contact_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> list[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ContactService(session, await record_context(session, principal, runtime))
            return await svc.links(contact_id)

    @put(
        "/{contact_id:uuid}/companies/{company_id:uuid}",
        summary="Link a company (with a role; primary makes it the contact's company)",
    )
    async def link_company(
        self,
        contact_id: uuid.UUID,
        company_id: uuid.UUID,
        data: CompanyLink,
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> list[dict[str, Any]]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ContactService(session, await record_context(session, principal, runtime))
            return await svc.link(contact_id, company_id, data.role, data.primary)

    @delete(
        "/{contact_id:uuid}/companies/{company_id:uuid}",
        status_code=204,
        summary="Unlink a company",
    )
    async def unlink_company(
        self,
        contact_id: uuid.UUID,
        company_id: uuid.UUID,
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> None:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = ContactService(session, await record_context(session, principal, runtime))
            await svc.unlink(contact_id, company_id)
