"""Custom field definitions API (``/api/v1/custom-fields``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.params import Parameter

from crm_contacts.access import access_for
from crm_contacts.fields import schemas
from crm_contacts.fields.service import FieldService, view
from crm_contacts.records.http import IfMatch, contacts_settings, master_key
from crm_lib.auth import Principal
from crm_lib.http import if_match_version
from crm_lib.service import ServiceRuntime


class CustomFieldController(Controller):
    path = "/api/v1/custom-fields"
    tags = ["custom fields"]

    @get("/", summary="Custom field definitions (optionally of one entity)")
    async def list_fields(
        self,
        principal: Principal,
        runtime: ServiceRuntime,
        entity: Annotated[str | None, Parameter(pattern=r"^(contact|company)$")] = None,
    ) -> list[schemas.CustomField]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await FieldService(session, await access_for(session, principal)).list(entity)

    @post("/", status_code=201, summary="Define a custom field (owner/admin)")
    async def create_field(
        self, data: schemas.CustomFieldCreate, principal: Principal, runtime: ServiceRuntime
    ) -> schemas.CustomField:
        ready = master_key(contacts_settings(runtime)) is not None
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = FieldService(session, await access_for(session, principal))
            return await svc.create(data, ready)

    @get("/{field_id:uuid}", summary="One custom field definition")
    async def get_field(
        self, field_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> schemas.CustomField:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = FieldService(session, await access_for(session, principal))
            return view(await svc.get(field_id))

    @patch("/{field_id:uuid}", summary="Change a definition (label, options, limits, archive)")
    async def update_field(
        self,
        field_id: uuid.UUID,
        data: schemas.CustomFieldUpdate,
        principal: Principal,
        runtime: ServiceRuntime,
        if_match: IfMatch = None,
    ) -> schemas.CustomField:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = FieldService(session, await access_for(session, principal))
            return await svc.update(field_id, data, if_match_version(if_match))
