"""Companies API (``/api/v1/companies``): the shared record routes plus linked contacts."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get

from crm_contacts.companies import schemas
from crm_contacts.companies.service import CompanyService
from crm_contacts.contacts.service import ContactService
from crm_contacts.records.controllers import RecordApi, record_controller
from crm_contacts.records.http import list_query, record_context
from crm_lib.auth import Principal
from crm_lib.pagination import Page
from crm_lib.service import ServiceRuntime

PATH = "/api/v1/companies"

CompanyController = record_controller(
    RecordApi(
        path=PATH,
        noun="company",
        plural="companies",
        service=CompanyService,
        create_schema=schemas.CompanyCreate,
        update_schema=schemas.CompanyUpdate,
        duplicate_hint="409 on a known domain",
    )
)


class CompanyContactsController(Controller):
    path = PATH
    tags = ["companies"]

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
