"""Sign-up: ``POST /api/v1/signup`` (anonymous)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post

from crm_identity.components import identity_of
from crm_identity.problems import SIGNUP_RACE, TOO_MANY_FROM_ADDRESS, VALIDATION
from crm_identity.signup import schemas as signup_schemas
from crm_identity.signup.service import SignupService
from crm_identity.web import API, NO_STORE
from crm_lib.client_ip import client_address
from crm_lib.service import ServiceRuntime


class SignupController(Controller):
    path = f"{API}/signup"
    tags = ["sign-up"]

    @post(
        "/",
        status_code=201,
        summary="Create a company account (tenant) and its owner",
        description=(
            "Never refuses an email or slug that is taken: an email with an account elsewhere "
            "gets a new tenant too (the address is told by email), a taken slug gets a -2, -3… "
            "suffix. Too many taken slugs from one client address in an hour: 429."
        ),
        cache_control=NO_STORE,
        responses={409: SIGNUP_RACE, 422: VALIDATION, 429: TOO_MANY_FROM_ADDRESS},
    )
    async def signup(
        self,
        data: signup_schemas.SignupRequest,
        request: Request[Any, Any, Any],
        runtime: ServiceRuntime,
    ) -> Response[signup_schemas.SignupResponse]:
        ident = identity_of(runtime)
        address = client_address(
            request.headers,
            request.client.host if request.client else None,
            ident.settings.internal_token,
        )
        result = await SignupService(
            runtime.db, ident.settings, ident.hashing, ident.sessions, runtime.redis
        ).signup(data, address)
        return Response(
            result,
            status_code=201,
            headers={"Location": result.status_url},
        )
