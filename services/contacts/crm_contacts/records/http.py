"""HTTP glue shared by the record controllers: caller context and list parameters."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.access import access_for
from crm_contacts.crypto import load_master_key
from crm_contacts.records.query import ListQuery, bad_query, parse_list_query
from crm_contacts.records.service import RecordContext, RecordService
from crm_contacts.settings import ContactsSettings
from crm_lib.auth import Principal
from crm_lib.service import ServiceRuntime

IfMatch = Annotated[str | None, Parameter(header="If-Match", required=False)]

_master_keys: dict[str, bytes | None] = {}


def etag(view: dict[str, Any]) -> dict[str, str]:
    return {"ETag": f'"{view["version"]}"'}


def master_key(settings: ContactsSettings) -> bytes | None:
    secret = (
        settings.contacts_master_key.get_secret_value() if settings.contacts_master_key else None
    )
    cache_key = secret or ""
    if cache_key not in _master_keys:
        _master_keys[cache_key] = load_master_key(secret)
    return _master_keys[cache_key]


def contacts_settings(runtime: ServiceRuntime) -> ContactsSettings:
    settings = runtime.settings
    if isinstance(settings, ContactsSettings):
        return settings
    return ContactsSettings(**settings.model_dump())


async def record_context(
    session: AsyncSession, principal: Principal, runtime: ServiceRuntime
) -> RecordContext:
    return await context_for(session, principal, contacts_settings(runtime))


async def context_for(
    session: AsyncSession, principal: Principal, settings: ContactsSettings
) -> RecordContext:
    """What record services need for ``principal`` (HTTP handlers and background jobs)."""
    return RecordContext(
        access=await access_for(session, principal),
        master_key=master_key(settings),
        word_similarity=settings.search_word_similarity,
        duplicate_similarity=settings.duplicate_name_similarity,
        bulk_read_audit_rows=settings.bulk_read_audit_rows,
    )


def list_query(request: Request[Any, Any, Any]) -> ListQuery:
    return query_from_params(request.query_params.dict())


def query_from_params(params: dict[str, list[str]]) -> ListQuery:
    limit: int | None = None
    if "limit" in params:
        raw = params["limit"][-1]
        if not raw.isdigit() or len(raw) > 6:
            raise bad_query("limit", "must be a whole number")
        limit = int(raw)
    return parse_list_query(params, limit=limit)


async def saved_list_query(
    request: Request[Any, Any, Any], session: AsyncSession, svc: RecordService
) -> ListQuery:
    """The list query of a request; ``view=<id>`` starts from a saved view's filters,
    sort and columns, and the request's own parameters override them key by key."""
    params = request.query_params.dict()
    view_ref = params.pop("view", None)
    if view_ref:
        from crm_contacts.views.service import SavedViewService

        views = SavedViewService(session, svc.ctx)
        params = {**await views.params_for(view_ref[-1], svc.entity.name), **params}
    return query_from_params(params)


def flag(request: Request[Any, Any, Any], name: str) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise bad_query(name, "must be true or false")
