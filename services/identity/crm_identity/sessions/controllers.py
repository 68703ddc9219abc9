"""Login sessions: ``/api/v1/auth/login|refresh|logout``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post

from crm_identity.components import identity_of
from crm_identity.problems import INVALID_LOGIN, TENANT_CLOSED, TOO_MANY_FROM_ADDRESS
from crm_identity.sessions import schemas as session_schemas
from crm_identity.web import API, NO_STORE
from crm_lib.auth import Principal
from crm_lib.client_ip import client_address
from crm_lib.service import ServiceRuntime


class AuthController(Controller):
    path = f"{API}/auth"
    tags = ["auth"]

    @post(
        "/login",
        status_code=200,
        summary="Log in with email and password",
        description=(
            "Every failed login (unknown email, wrong password, inactive user, throttled) "
            "answers the same 401 problem (`…/invalid-login`); a throttled one adds "
            "`Retry-After`. `tenant` (company slug) picks the company of an email that "
            "belongs to several; without it, the oldest. 429: too many logins from this "
            "client address."
        ),
        cache_control=NO_STORE,
        responses={401: INVALID_LOGIN, 403: TENANT_CLOSED, 429: TOO_MANY_FROM_ADDRESS},
    )
    async def login(
        self,
        data: session_schemas.LoginRequest,
        request: Request[Any, Any, Any],
        runtime: ServiceRuntime,
    ) -> session_schemas.TokenPair:
        ident = identity_of(runtime)
        ip = client_address(
            request.headers,
            request.client.host if request.client else None,
            ident.settings.internal_token,
        )
        return await ident.sessions.login(data, ip)

    @post("/refresh", status_code=200, summary="Rotate a refresh token", cache_control=NO_STORE)
    async def refresh(
        self, data: session_schemas.RefreshRequest, runtime: ServiceRuntime
    ) -> session_schemas.TokenPair:
        return await identity_of(runtime).sessions.refresh(data)

    @post("/logout", status_code=204, summary="End this session (or every session)")
    async def logout(
        self, data: session_schemas.LogoutRequest, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        await identity_of(runtime).sessions.logout(principal, data)
