"""Contacts API (``/api/v1/contacts``): the shared record routes plus company links."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, delete, get, put

from crm_contacts.companies.schemas import CompanyLink
from crm_contacts.contacts import schemas
from crm_contacts.contacts.service import ContactService
from crm_contacts.problems import INVALID
from crm_contacts.records.controllers import RecordApi, record_controller
from crm_contacts.records.http import record_context
from crm_lib.auth import Principal
from crm_lib.service import ServiceRuntime

PATH = "/api/v1/contacts"

ContactController = record_controller(
    RecordApi(
        path=PATH,
        noun="contact",
        plural="contacts",
        service=ContactService,
        create_schema=schemas.ContactCreate,
        update_schema=schemas.ContactUpdate,
        duplicate_hint="409 on a likely duplicate",
    )
)


class ContactLinkController(Controller):
    path = PATH
    tags = ["contacts"]

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
        responses={422: INVALID},
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
