"""API keys: ``/api/v1/api-keys`` (owners and admins)."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, post

from crm_identity.api_keys import schemas as key_schemas
from crm_identity.api_keys.service import ApiKeyService
from crm_identity.components import identity_of
from crm_identity.web import API, NO_STORE, user_only
from crm_lib.auth import Principal
from crm_lib.pagination import Page
from crm_lib.service import ServiceRuntime


class ApiKeyController(Controller):
    path = f"{API}/api-keys"
    tags = ["api keys"]

    @post(
        "/",
        status_code=201,
        summary="Create an API key (the key is shown only in this answer)",
        cache_control=NO_STORE,
    )
    async def create_key(
        self, data: key_schemas.ApiKeyCreate, principal: Principal, runtime: ServiceRuntime
    ) -> key_schemas.ApiKeyCreated:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await ApiKeyService(session, principal, identity_of(runtime).settings).create(
                data
            )

    @get("/", summary="List API keys (prefix and last 4 only)")
    async def list_keys(
        self, principal: Principal, runtime: ServiceRuntime
    ) -> Page[key_schemas.ApiKey]:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return Page(
                await ApiKeyService(session, principal, identity_of(runtime).settings).list(), None
            )

    @delete("/{key_id:uuid}", status_code=204, summary="Revoke an API key (effective at once)")
    async def revoke_key(
        self, key_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            await ApiKeyService(session, principal, identity_of(runtime).settings).revoke(key_id)
