"""Users (``/api/v1/users``) and seats (``/api/v1/seats``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import Parameter

from crm_identity.users import schemas as user_schemas
from crm_identity.users.service import SeatPolicy, UserService
from crm_identity.web import API, user_only
from crm_lib.auth import Principal
from crm_lib.http import ProblemError, if_match_version
from crm_lib.pagination import Page, clamp_limit, decode_cursor, encode_cursor
from crm_lib.service import ServiceRuntime


class UserController(Controller):
    path = f"{API}/users"
    tags = ["users"]

    @get("/", summary="List users")
    async def list_users(
        self,
        principal: Principal,
        runtime: ServiceRuntime,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: str | None = None,
        status: Annotated[str | None, Parameter(pattern=r"^(active|deactivated)$")] = None,
        role: str | None = None,
    ) -> Page[user_schemas.User]:
        if principal.kind != "user" and not principal.allows("users:read"):
            raise ProblemError(403, "The token lacks the scope users:read.")
        after = decode_cursor(cursor, str, uuid.UUID) if cursor else None
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            users, last = await UserService(session, principal).page(
                clamp_limit(limit), after, status, role
            )  # type: ignore[arg-type]
        return Page(users, encode_cursor(last.email, last.id) if last else None)

    @get("/me", summary="The signed-in user")
    async def me(self, principal: Principal, runtime: ServiceRuntime) -> user_schemas.User:
        user_only(principal)
        assert principal.user_id is not None
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await UserService(session, principal).get(principal.user_id)

    @get("/{user_id:uuid}", summary="One user")
    async def get_user(
        self, user_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> Response[user_schemas.User]:
        if principal.kind != "user" and not principal.allows("users:read"):
            raise ProblemError(403, "The token lacks the scope users:read.")
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            user = await UserService(session, principal).get(user_id)
        return Response(user, headers={"ETag": f'"{user.version}"'})

    @patch("/{user_id:uuid}", summary="Change a user's name or roles (If-Match: version)")
    async def update_user(
        self,
        user_id: uuid.UUID,
        data: user_schemas.UserUpdate,
        request: Request[Any, Any, Any],
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> Response[user_schemas.User]:
        user_only(principal)
        version = if_match_version(request.headers.get("if-match"))
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            user = await UserService(session, principal).update(user_id, data, version)
        return Response(user, headers={"ETag": f'"{user.version}"'})

    @post("/{user_id:uuid}/deactivate", status_code=200, summary="Deactivate a user (frees a seat)")
    async def deactivate(
        self, user_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> user_schemas.User:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await UserService(session, principal).set_status(user_id, "deactivated")

    @post("/{user_id:uuid}/reactivate", status_code=200, summary="Reactivate a user (takes a seat)")
    async def reactivate(
        self, user_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> user_schemas.User:
        user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await UserService(session, principal).set_status(user_id, "active")


class SeatController(Controller):
    path = f"{API}/seats"
    tags = ["seats"]

    @get("/", summary="Seats used and available")
    async def seats(self, principal: Principal, runtime: ServiceRuntime) -> user_schemas.Seats:
        if not principal.has_role("owner", "admin"):
            raise ProblemError(403, "Only owners and admins see seats.")
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await SeatPolicy(session, principal.tenant_id).summary()
