"""Audit API (``/api/v1/audit``): field history of a record and the access audit.

Owners and admins only (API clients need ``contacts:admin``). History covers
deleted records too, so an admin can see what happened before a delete.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, get
from litestar.params import Parameter

from crm_contacts.access import ADMINS, access_for
from crm_contacts.audit.repository import AuditRepository
from crm_contacts.models import Company, Contact
from crm_contacts.records.service import jsonable
from crm_lib.auth import Principal
from crm_lib.http import ProblemError
from crm_lib.pagination import Page, clamp_limit, decode_cursor, encode_cursor
from crm_lib.service import ServiceRuntime

ENTITIES: dict[str, Any] = {"contact": Contact, "company": Company}
Limit = Annotated[int | None, Parameter(query="limit", required=False)]
Cursor = Annotated[str | None, Parameter(query="cursor", required=False)]
Action = Annotated[str | None, Parameter(query="action", required=False, max_length=40)]


def _page(rows: list[Any], limit: int, view: Any) -> Page[dict[str, Any]]:
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].id) if more and rows else None
    return Page([view(r) for r in rows], next_cursor)


def _change_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "entity": row.entity,
        "record_id": str(row.record_id),
        "field": row.field,
        "from": row.old_value,
        "to": row.new_value,
        "reason": row.reason,
        "actor": row.actor,
        "changed_at": jsonable(row.changed_at),
    }


def _access_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "actor": row.actor,
        "action": row.action,
        "entity": row.entity,
        "record_count": row.record_count,
        "details": row.details,
        "at": jsonable(row.at),
    }


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]

    @get("/history/{entity:str}/{record_id:uuid}", summary="Field history of a record")
    async def history(
        self,
        entity: str,
        record_id: uuid.UUID,
        principal: Principal,
        runtime: ServiceRuntime,
        cursor: Cursor = None,
        limit: Limit = None,
    ) -> Page[dict[str, Any]]:
        size = clamp_limit(limit)
        before = decode_cursor(cursor, int)[0] if cursor else None
        model = ENTITIES.get(entity)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            access = await access_for(session, principal)
            access.require(ADMINS, "contacts:admin", "read the audit history")
            if model is None:
                raise ProblemError(404, "entity must be contact or company.")
            repo = AuditRepository(session)
            if not await repo.exists(model, record_id):
                raise ProblemError(404, f"No such {entity}.")
            rows = await repo.history(entity, record_id, before, size + 1)
        return _page(rows, size, _change_view)

    @get("/access", summary="Exports, bulk reads and bulk changes: who did what")
    async def access_log(
        self,
        principal: Principal,
        runtime: ServiceRuntime,
        action: Action = None,
        cursor: Cursor = None,
        limit: Limit = None,
    ) -> Page[dict[str, Any]]:
        size = clamp_limit(limit)
        before = decode_cursor(cursor, int)[0] if cursor else None
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            access = await access_for(session, principal)
            access.require(ADMINS, "contacts:admin", "read the access audit")
            rows = await AuditRepository(session).access_log(action, before, size + 1)
        return _page(rows, size, _access_view)
