"""Tags API (``/api/v1/tags``)."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, patch, post

from crm_contacts.access import access_for
from crm_contacts.records.http import IfMatch
from crm_contacts.tags import schemas
from crm_contacts.tags.service import TagService
from crm_lib.auth import Principal
from crm_lib.http import if_match_version
from crm_lib.service import ServiceRuntime


class TagController(Controller):
    path = "/api/v1/tags"
    tags = ["tags"]

    @get("/", summary="All tags")
    async def list_tags(self, principal: Principal, runtime: ServiceRuntime) -> list[schemas.Tag]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TagService(session, await access_for(session, principal)).list()

    @post("/", status_code=201, summary="Create a tag")
    async def create_tag(
        self, data: schemas.TagCreate, principal: Principal, runtime: ServiceRuntime
    ) -> schemas.Tag:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TagService(session, await access_for(session, principal)).create(data)

    @get("/{tag_id:uuid}", summary="A tag and how many records carry it")
    async def get_tag(
        self, tag_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> schemas.TagUsage:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TagService(session, await access_for(session, principal)).get(tag_id)

    @patch("/{tag_id:uuid}", summary="Rename or recolour a tag")
    async def update_tag(
        self,
        tag_id: uuid.UUID,
        data: schemas.TagUpdate,
        principal: Principal,
        runtime: ServiceRuntime,
        if_match: IfMatch = None,
    ) -> schemas.Tag:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = TagService(session, await access_for(session, principal))
            return await svc.update(tag_id, data, if_match_version(if_match))

    @post("/{tag_id:uuid}/merge", status_code=200, summary="Merge this tag into another")
    async def merge_tag(
        self,
        tag_id: uuid.UUID,
        data: schemas.TagMerge,
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> schemas.TagUsage:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            svc = TagService(session, await access_for(session, principal))
            return await svc.merge(tag_id, data)

    @delete("/{tag_id:uuid}", status_code=204, summary="Delete a tag (removed from every record)")
    async def delete_tag(
        self, tag_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            await TagService(session, await access_for(session, principal)).delete(tag_id)
