"""OAuth2: clients (``/api/v1/oauth/clients``, owners and admins), the client-credentials
token endpoint, introspection and revocation."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body

from crm_identity.components import identity_of
from crm_identity.oauth import schemas as oauth_schemas
from crm_identity.oauth.service import ClientAdmin, introspect_for, revoke, token_response
from crm_identity.problems import NOT_YOURS
from crm_identity.web import API, NO_STORE, user_only
from crm_lib.auth import Principal
from crm_lib.http import ProblemError
from crm_lib.pagination import Page
from crm_lib.service import ServiceRuntime


def _form_token(data: dict[str, str]) -> str:
    token = data.get("token")
    if not isinstance(token, str) or not token:
        raise ProblemError(
            400, "token is required.", errors=[{"field": "token", "message": "required"}]
        )
    return token


class OAuthController(Controller):
    path = f"{API}/oauth"
    tags = ["oauth"]

    @post(
        "/clients",
        status_code=201,
        summary="Register an OAuth2 client (secret shown once)",
        cache_control=NO_STORE,
    )
    async def create_client(
        self, data: oauth_schemas.ClientCreate, principal: Principal, runtime: ServiceRuntime
    ) -> oauth_schemas.ClientCreated:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await ClientAdmin(session, principal).create(data)

    @get("/clients", summary="List OAuth2 clients")
    async def list_clients(
        self, principal: Principal, runtime: ServiceRuntime
    ) -> Page[oauth_schemas.Client]:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return Page(await ClientAdmin(session, principal).list(), None)

    @delete("/clients/{client_row_id:uuid}", status_code=204, summary="Revoke an OAuth2 client")
    async def revoke_client(
        self, client_row_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            await ClientAdmin(session, principal).revoke(client_row_id)

    @post("/token", status_code=200, summary="Client credentials grant (RFC 6749 §4.4)")
    async def token(
        self,
        request: Request[Any, Any, Any],
        runtime: ServiceRuntime,
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[Any]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        form = {k: v for k, v in data.items() if isinstance(v, str)}
        ident = identity_of(runtime)
        status, body, out_headers = await token_response(runtime.db, ident.keys, headers, form)
        return Response(
            body, status_code=status, headers=dict(out_headers), media_type="application/json"
        )

    @post("/introspect", status_code=200, summary="Token introspection (RFC 7662)")
    async def introspect_token(
        self,
        principal: Principal,
        runtime: ServiceRuntime,
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> dict[str, Any]:
        token = _form_token(data)
        return await introspect_for(identity_of(runtime).verifier, runtime.redis, token, principal)

    @post(
        "/revoke",
        status_code=200,
        summary="Token revocation (RFC 7009)",
        description=(
            "Revokes an access token issued to the caller. Unknown, invalid or expired "
            "tokens (and other tenants'): 200, nothing done. A token of this tenant issued "
            "to another user, client or key: 400 problem with `error: unauthorized_client`, "
            "and the token stays valid."
        ),
        responses={400: NOT_YOURS},
    )
    async def revoke_token(
        self,
        principal: Principal,
        runtime: ServiceRuntime,
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> dict[str, Any]:
        token = _form_token(data)
        await revoke(identity_of(runtime).verifier, runtime.redis, token, principal)
        return {}
