"""One HTTP shape for every record entity (contacts, companies): list/search, create,
get, patch, delete, bulk tag/reassign and batch create/update/upsert.

``record_controller`` builds the controller class from a ``RecordApi``. This module
deliberately does not use postponed annotations: the handlers' body types come
from the ``RecordApi`` at class-build time, and Litestar reads them as real types.
"""

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.problems import DUPLICATE, INVALID, SENSITIVE_WRITE
from crm_contacts.records.batch import (
    BatchCreate,
    BatchResult,
    BatchRunner,
    BatchUpdate,
    BatchUpsert,
)
from crm_contacts.records.http import IfMatch, etag, flag, record_context, saved_list_query
from crm_contacts.records.service import RecordService
from crm_contacts.tags.schemas import BulkResult, BulkTag
from crm_lib.auth import Principal
from crm_lib.http import if_match_version
from crm_lib.pagination import Page
from crm_lib.service import ServiceRuntime


class BulkReassign(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=1000)]
    owner_id: uuid.UUID


@dataclass(frozen=True)
class RecordApi:
    path: str  # /api/v1/contacts
    noun: str  # contact
    plural: str  # contacts
    service: type[RecordService]
    create_schema: type[msgspec.Struct]
    update_schema: type[msgspec.Struct]
    #: What a 409 on create means for this entity (for the OpenAPI summary).
    duplicate_hint: str


def record_controller(api: RecordApi) -> type[Controller]:
    Create = api.create_schema
    Update = api.update_schema
    noun, plural = api.noun, api.plural

    async def service(session: AsyncSession, principal: Principal, runtime: ServiceRuntime) -> Any:
        return api.service(session, await record_context(session, principal, runtime))

    class RecordController(Controller):
        path = api.path
        tags = [plural]

        @get("/", summary=f"List or search {plural} (filters, sort, fields, q, view)")
        async def list_records(
            self, request: Request[Any, Any, Any], principal: Principal, runtime: ServiceRuntime
        ) -> Page[dict[str, Any]]:
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                svc = await service(session, principal, runtime)
                query = await saved_list_query(request, session, svc)
                page = await svc.page(query)
                await svc.audit_bulk_read(query, len(page.data))
                return page

        @post(
            "/",
            status_code=201,
            summary=f"Create a {noun} ({api.duplicate_hint})",
            responses={403: SENSITIVE_WRITE, 409: DUPLICATE, 422: INVALID},
        )
        async def create_record(
            self,
            data: Create,  # type: ignore[valid-type]
            request: Request[Any, Any, Any],
            principal: Principal,
            runtime: ServiceRuntime,
        ) -> Response[dict[str, Any]]:
            allow = flag(request, "allow_duplicate")
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                svc = await service(session, principal, runtime)
                view = await svc.view(await svc.create(data, allow_duplicate=allow))
            headers = {"Location": f"{api.path}/{view['id']}", **etag(view)}
            return Response(view, status_code=201, headers=headers)

        @get("/{record_id:uuid}", summary=f"One {noun} (fields= picks fields)")
        async def get_record(
            self,
            record_id: uuid.UUID,
            request: Request[Any, Any, Any],
            principal: Principal,
            runtime: ServiceRuntime,
        ) -> Response[dict[str, Any]]:
            fields = request.query_params.get("fields")
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                svc = await service(session, principal, runtime)
                chosen = svc.check_fields(fields.split(",") if fields else None)
                view = (await svc.views([await svc.visible(record_id)], chosen))[0]
            return Response(view, headers=etag(view))

        @patch(
            "/{record_id:uuid}",
            summary=f"Change a {noun} (If-Match: version → 412 if stale)",
            responses={403: SENSITIVE_WRITE, 409: DUPLICATE, 422: INVALID},
        )
        async def update_record(
            self,
            record_id: uuid.UUID,
            data: Update,  # type: ignore[valid-type]
            principal: Principal,
            runtime: ServiceRuntime,
            if_match: IfMatch = None,
        ) -> Response[dict[str, Any]]:
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                svc = await service(session, principal, runtime)
                row = await svc.update(record_id, data, if_match_version(if_match))
                view = await svc.view(row)
            return Response(view, headers=etag(view))

        @delete("/{record_id:uuid}", status_code=204, summary=f"Delete a {noun}")
        async def delete_record(
            self,
            record_id: uuid.UUID,
            principal: Principal,
            runtime: ServiceRuntime,
            if_match: IfMatch = None,
        ) -> None:
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                svc = await service(session, principal, runtime)
                await svc.delete(record_id, if_match_version(if_match))

        @post("/bulk/tags", status_code=200, summary=f"Tag or untag many {plural}")
        async def bulk_tags(
            self, data: BulkTag, principal: Principal, runtime: ServiceRuntime
        ) -> BulkResult:
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                svc = await service(session, principal, runtime)
                updated, skipped = await svc.bulk_tags(data.ids, data.tags, data.action)
            return BulkResult(updated, skipped)

        @post(
            "/bulk/reassign", status_code=200, summary=f"Give many {plural} a new owner (audited)"
        )
        async def bulk_reassign(
            self, data: BulkReassign, principal: Principal, runtime: ServiceRuntime
        ) -> BulkResult:
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                svc = await service(session, principal, runtime)
                updated, skipped = await svc.reassign(data.ids, data.owner_id)
            return BulkResult(updated, skipped)

        @post(
            "/batch/create", status_code=200, summary=f"Create up to 100 {plural}, one result each"
        )
        async def batch_create(
            self, data: BatchCreate, principal: Principal, runtime: ServiceRuntime
        ) -> BatchResult:
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                svc = await service(session, principal, runtime)
                return await BatchRunner(svc, Create, Update).create(data)

        @post(
            "/batch/update", status_code=200, summary=f"Change up to 100 {plural}, one result each"
        )
        async def batch_update(
            self, data: BatchUpdate, principal: Principal, runtime: ServiceRuntime
        ) -> BatchResult:
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                svc = await service(session, principal, runtime)
                return await BatchRunner(svc, Create, Update).update(data)

        @post(
            "/batch/upsert",
            status_code=200,
            summary=f"Create or update up to 100 {plural} by a unique key, one result each",
        )
        async def batch_upsert(
            self, data: BatchUpsert, principal: Principal, runtime: ServiceRuntime
        ) -> BatchResult:
            async with runtime.db.tenant_session(principal.tenant_id) as session:
                svc = await service(session, principal, runtime)
                return await BatchRunner(svc, Create, Update).upsert(data)

    RecordController.__name__ = RecordController.__qualname__ = (
        f"{plural.title().replace('-', '')}Controller"
    )
    return RecordController
