"""Identity's public API (``/api/v1/...``, reached through the gateway).

HTTP only: each handler opens the one transaction of its request (committed on
clean exit), calls a service, and shapes the answer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import CacheControlHeader
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from sqlalchemy import func, select, update

from crm_identity.api_keys import schemas as key_schemas
from crm_identity.api_keys.service import ApiKeyService
from crm_identity.components import identity_of
from crm_identity.exports import service as exports
from crm_identity.invitations import schemas as inv_schemas
from crm_identity.invitations.service import InvitationService, join_teams
from crm_identity.models import Invitation as InvitationRow
from crm_identity.models import Tenant as TenantRow
from crm_identity.oauth import schemas as oauth_schemas
from crm_identity.oauth.service import ClientAdmin, introspect, revoke, token_response
from crm_identity.plans import PLANS, Plan
from crm_identity.problems import (
    FORBIDDEN,
    INVALID_LOGIN,
    NOT_YOURS,
    SIGNUP_RACE,
    TENANT_CLOSED,
    TOO_MANY_FROM_ADDRESS,
    VALIDATION,
)
from crm_identity.security import password_problems, sha256_hex, tenant_of_token
from crm_identity.sessions import schemas as session_schemas
from crm_identity.signup import schemas as signup_schemas
from crm_identity.signup.service import SignupService
from crm_identity.teams import schemas as team_schemas
from crm_identity.teams.service import TeamService
from crm_identity.tenants.schemas import Tenant
from crm_identity.tenants.service import TenantService
from crm_identity.users import schemas as user_schemas
from crm_identity.users.repository import UserRepository
from crm_identity.users.service import SeatPolicy, UserService
from crm_lib.auth import Principal
from crm_lib.client_ip import client_address
from crm_lib.events import emit
from crm_lib.http import ProblemError, if_match_version
from crm_lib.pagination import Page, clamp_limit, decode_cursor, encode_cursor
from crm_lib.service import ServiceRuntime
from crm_lib.telemetry import get_logger

API = "/api/v1"
# Answers carrying a secret shown once (tokens, new keys, client secrets): no cache and no
# idempotency replay store may keep them (the gateway's IdempotencyLayer honours it).
NO_STORE = CacheControlHeader(no_store=True)
log = get_logger("crm.identity.api")


def _user_only(principal: Principal) -> None:
    if principal.kind != "user":
        raise ProblemError(403, "This endpoint is for signed-in users, not API credentials.")


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


class TenantDeletion(msgspec.Struct, forbid_unknown_fields=True):
    confirm_slug: str


class CurrentTenant(msgspec.Struct):
    tenant: Tenant
    # Seat usage: owners and admins, and API credentials with the scope seats:read;
    # null for everyone else.
    seats: user_schemas.Seats | None
    plan: Plan


def sees_seats(principal: Principal) -> bool:
    if principal.kind == "user":
        return principal.has_role("owner", "admin")
    return principal.allows("seats:read")


class TenantApiController(Controller):
    path = f"{API}/tenant"
    tags = ["tenant"]

    @get(
        "/",
        summary="The caller's tenant: status (provisioning → active), plan and seats",
        description=(
            "`seats` (usage) only for owners and admins, or API keys/OAuth clients with "
            "the scope `seats:read`; `null` for everyone else."
        ),
    )
    async def current(self, principal: Principal, runtime: ServiceRuntime) -> CurrentTenant:
        settings = identity_of(runtime).settings
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            tenant = await TenantService(session, settings.provisioning_services).get(
                principal.tenant_id
            )
            seats = (
                await SeatPolicy(session, principal.tenant_id).summary()
                if sees_seats(principal)
                else None
            )
        return CurrentTenant(tenant, seats, PLANS.get(tenant.plan, PLANS["free"]))

    @delete("/", status_code=202, summary="Request deletion of the whole tenant (owner only)")
    async def request_deletion(
        self, data: Annotated[TenantDeletion, Body()], principal: Principal, runtime: ServiceRuntime
    ) -> Tenant:
        if "owner" not in principal.roles:
            raise ProblemError(403, "Only an owner can delete the tenant.")
        settings = identity_of(runtime).settings
        async with runtime.db.platform_session() as session:
            svc = TenantService(session, settings.provisioning_services)
            tenant = await svc.get(principal.tenant_id)
            if data.confirm_slug != tenant.slug:
                raise ProblemError(
                    422,
                    "confirm_slug must equal the tenant's slug.",
                    title="Validation failed",
                    errors=[{"field": "confirm_slug", "message": "does not match"}],
                )
            await svc.request_deletion(principal.tenant_id, actor=principal.subject)
            return await svc.get(principal.tenant_id)


class ExportController(Controller):
    path = f"{API}/tenant/exports"
    tags = ["tenant"]

    @post("/", status_code=202, summary="Export all of the tenant's data (owner/admin)")
    async def request_export(
        self, principal: Principal, runtime: ServiceRuntime
    ) -> Response[exports.ExportView]:
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            job = await exports.request_export(session, principal)
        return Response(
            job, status_code=202, headers={"Location": f"{API}/tenant/exports/{job.id}"}
        )

    @get("/{job_id:uuid}", summary="Progress of an export")
    async def get_export(
        self, job_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> exports.ExportView:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return exports.view(await exports.get_export(session, principal, job_id))

    @get(
        "/{job_id:uuid}/download",
        summary="Download a finished export (zip)",
        media_type="application/zip",
    )
    async def download_export(
        self, job_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> Response[bytes]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            job = await exports.get_export(session, principal, job_id)
        nc = await runtime.nats()
        body = await exports.download(nc.jetstream(), job)
        return Response(
            body,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="crm-export-{job_id}.zip"'},
        )


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
        _user_only(principal)
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
        _user_only(principal)
        version = if_match_version(request.headers.get("if-match"))
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            user = await UserService(session, principal).update(user_id, data, version)
        return Response(user, headers={"ETag": f'"{user.version}"'})

    @post("/{user_id:uuid}/deactivate", status_code=200, summary="Deactivate a user (frees a seat)")
    async def deactivate(
        self, user_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> user_schemas.User:
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await UserService(session, principal).set_status(user_id, "deactivated")

    @post("/{user_id:uuid}/reactivate", status_code=200, summary="Reactivate a user (takes a seat)")
    async def reactivate(
        self, user_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> user_schemas.User:
        _user_only(principal)
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


class InvitationController(Controller):
    path = f"{API}/invitations"
    tags = ["invitations"]

    @post("/", status_code=201, summary="Invite a colleague (takes a seat; emails a one-time link)")
    async def invite(
        self, data: inv_schemas.InvitationCreate, principal: Principal, runtime: ServiceRuntime
    ) -> inv_schemas.Invitation:
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            invitation, _token = await InvitationService(
                session, principal, identity_of(runtime).settings
            ).create(data)
        return invitation

    @get("/", summary="List invitations")
    async def list_invitations(
        self,
        principal: Principal,
        runtime: ServiceRuntime,
        status: Annotated[
            str | None, Parameter(pattern=r"^(pending|accepted|revoked|expired)$")
        ] = None,
    ) -> Page[inv_schemas.Invitation]:
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            rows = await InvitationService(session, principal, identity_of(runtime).settings).list(
                status
            )
        return Page(rows, None)

    @post("/{invitation_id:uuid}/resend", status_code=200, summary="Send the invitation again")
    async def resend(
        self, invitation_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> inv_schemas.Invitation:
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await InvitationService(
                session, principal, identity_of(runtime).settings
            ).resend(invitation_id)

    @delete("/{invitation_id:uuid}", status_code=204, summary="Revoke an invitation")
    async def revoke_invitation(
        self, invitation_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            await InvitationService(session, principal, identity_of(runtime).settings).revoke(
                invitation_id
            )

    @post(
        "/accept",
        status_code=201,
        summary="Accept an invitation: set name and password",
        cache_control=NO_STORE,
    )
    async def accept(
        self, data: inv_schemas.InvitationAccept, runtime: ServiceRuntime
    ) -> session_schemas.TokenPair:
        ident = identity_of(runtime)
        gone = ProblemError(404, "This invitation link is not valid.")
        tenant_id = tenant_of_token(data.token)
        if tenant_id is None:
            raise gone
        async with runtime.db.platform_session() as session:
            tenant = await session.get(TenantRow, tenant_id)
        if tenant is None or tenant.status in ("deleting", "deleted", "pending_deletion"):
            raise gone
        async with runtime.db.tenant_session(tenant_id) as session:
            invitation = (
                await session.execute(
                    select(InvitationRow)
                    .where(InvitationRow.token_hash == sha256_hex(data.token))
                    .with_for_update()
                )
            ).scalar_one_or_none()
            if invitation is None or invitation.status != "pending":
                raise gone
            if invitation.expires_at <= datetime.now(UTC):
                raise ProblemError(
                    410, "This invitation has expired; ask for a new one.", title="Gone"
                )
            problems = password_problems(
                data.password, email=invitation.email, min_length=ident.settings.password_min_length
            )
            if problems:
                raise ProblemError(
                    422,
                    "The password is too weak.",
                    title="Validation failed",
                    errors=[{"field": "password", "message": "; ".join(problems)}],
                )
            users = UserRepository(session)
            if await users.by_email(invitation.email) is not None:
                raise ProblemError(409, "A user with this email already exists.")
            password_hash = await ident.hashing.hash(data.password)
            user = await users.insert(
                id=uuid.uuid4(),
                email=invitation.email,
                full_name=data.full_name.strip(),
                password_hash=password_hash,
                roles=list(invitation.roles),
                status="active",
            )
            await join_teams(session, tenant_id, user.id, list(invitation.team_ids))
            await users.add_login(invitation.email, tenant_id, user.id)
            await session.execute(
                update(InvitationRow)
                .where(InvitationRow.id == invitation.id)
                .values(status="accepted", accepted_at=func.now(), updated_at=func.now())
            )
            await emit(
                session,
                "identity.user.created",
                tenant_id,
                {
                    "user_id": str(user.id),
                    "email": invitation.email,
                    "roles": list(user.roles),
                    "source": "invitation",
                    "invitation_id": str(invitation.id),
                },
                actor=f"user:{user.id}",
            )
            return await ident.sessions.issue(session, tenant, user)


class TeamController(Controller):
    path = f"{API}/teams"
    tags = ["teams"]

    @post("/", status_code=201, summary="Create a team")
    async def create_team(
        self, data: team_schemas.TeamCreate, principal: Principal, runtime: ServiceRuntime
    ) -> team_schemas.Team:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TeamService(session, principal).create(data)

    @get("/", summary="List teams", responses={403: FORBIDDEN})
    async def list_teams(
        self, principal: Principal, runtime: ServiceRuntime
    ) -> Page[team_schemas.Team]:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return Page(await TeamService(session, principal).list(), None)

    @get("/{team_id:uuid}", summary="One team", responses={403: FORBIDDEN})
    async def get_team(
        self, team_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> team_schemas.Team:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TeamService(session, principal).get(team_id)

    @patch("/{team_id:uuid}", summary="Rename a team")
    async def rename_team(
        self,
        team_id: uuid.UUID,
        data: team_schemas.TeamUpdate,
        request: Request[Any, Any, Any],
        principal: Principal,
        runtime: ServiceRuntime,
    ) -> team_schemas.Team:
        version = if_match_version(request.headers.get("if-match"))
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TeamService(session, principal).rename(team_id, data, version)

    @delete("/{team_id:uuid}", status_code=204, summary="Delete a team")
    async def delete_team(
        self, team_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            await TeamService(session, principal).delete(team_id)

    @put("/{team_id:uuid}/members/{user_id:uuid}", status_code=200, summary="Add a member")
    async def add_member(
        self, team_id: uuid.UUID, user_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> team_schemas.Team:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TeamService(session, principal).add_member(team_id, user_id)

    @delete("/{team_id:uuid}/members/{user_id:uuid}", status_code=200, summary="Remove a member")
    async def remove_member(
        self, team_id: uuid.UUID, user_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> team_schemas.Team:
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await TeamService(session, principal).remove_member(team_id, user_id)


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
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await ApiKeyService(session, principal, identity_of(runtime).settings).create(
                data
            )

    @get("/", summary="List API keys (prefix and last 4 only)")
    async def list_keys(
        self, principal: Principal, runtime: ServiceRuntime
    ) -> Page[key_schemas.ApiKey]:
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return Page(
                await ApiKeyService(session, principal, identity_of(runtime).settings).list(), None
            )

    @delete("/{key_id:uuid}", status_code=204, summary="Revoke an API key (effective at once)")
    async def revoke_key(
        self, key_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            await ApiKeyService(session, principal, identity_of(runtime).settings).revoke(key_id)


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
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await ClientAdmin(session, principal).create(data)

    @get("/clients", summary="List OAuth2 clients")
    async def list_clients(
        self, principal: Principal, runtime: ServiceRuntime
    ) -> Page[oauth_schemas.Client]:
        _user_only(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return Page(await ClientAdmin(session, principal).list(), None)

    @delete("/clients/{client_row_id:uuid}", status_code=204, summary="Revoke an OAuth2 client")
    async def revoke_client(
        self, client_row_id: uuid.UUID, principal: Principal, runtime: ServiceRuntime
    ) -> None:
        _user_only(principal)
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
        answer = await introspect(identity_of(runtime).verifier, runtime.redis, token)
        if answer.get("active") and answer.get("tid") != str(principal.tenant_id):
            return {"active": False}  # never describe another tenant's tokens
        return answer

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


class PlanController(Controller):
    path = f"{API}/plans"
    tags = ["plans"]

    @get("/", summary="The plan catalogue")
    async def plans(self) -> Page[Plan]:
        return Page(list(PLANS.values()), None)


class JWKSController(Controller):
    path = "/.well-known"
    tags = ["keys"]

    @get("/jwks.json", summary="Public keys that sign access tokens")
    async def jwks(self, runtime: ServiceRuntime) -> Response[dict[str, Any]]:
        doc = await identity_of(runtime).keys.jwks()
        return Response(doc, headers={"Cache-Control": "public, max-age=60"})


PUBLIC_CONTROLLERS = [
    SignupController,
    AuthController,
    TenantApiController,
    ExportController,
    UserController,
    SeatController,
    InvitationController,
    TeamController,
    ApiKeyController,
    OAuthController,
    PlanController,
    JWKSController,
]
