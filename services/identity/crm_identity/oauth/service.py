"""OAuth2 client credentials (RFC 6749 §4.4) on authlib, plus RFC 7662 / 7009.

authlib's authorization server is synchronous and framework-neutral: the async
parts (finding the client, loading signing keys) happen before it runs, and the
request is handed to it as an ``OAuth2Request`` built from the Litestar request.
Access tokens are self-contained JWTs; revoking one records its ``jti`` in Redis
until it expires (introspection reports it inactive) -- refresh tokens are not
issued for this grant.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import msgspec
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.api_keys.repository import CredentialDirectoryRepository
from crm_identity.keys.service import KeyStore
from crm_identity.models import OAuthClient, Tenant
from crm_identity.oauth import schemas
from crm_identity.oauth.repository import OAuthClientRepository
from crm_identity.roles import MANAGERS
from crm_identity.security import constant_time_equal, random_secret, sha256_hex
from crm_identity.tenants.repository import TenantRepository
from crm_lib.auth import Principal
from crm_lib.events import emit
from crm_lib.http import ProblemError
from crm_lib.revocation import AccessCheck, revoke_subject_on_commit, revoke_token
from crm_lib.telemetry import get_logger
from crm_lib.tenancy import Database

log = get_logger("crm.identity.oauth")

CLOSED = frozenset({"deleting", "deleted", "pending_deletion"})


def to_schema(row: OAuthClient) -> schemas.Client:
    return schemas.Client(
        row.id, row.client_id, row.name, list(row.scopes), row.created_at, row.revoked_at
    )


class ClientAdmin:
    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        if not principal.has_role(*MANAGERS):
            raise ProblemError(403, "Only owners and admins manage OAuth clients.")
        self.session = session
        self.principal = principal
        self.repo = OAuthClientRepository(session)

    async def create(self, data: schemas.ClientCreate) -> schemas.ClientCreated:
        client_id = f"crmc_{random_secret(24)}"
        secret = random_secret(48)
        row = await self.repo.insert(
            id=uuid.uuid4(),
            client_id=client_id,
            name=data.name.strip(),
            secret_hash=sha256_hex(secret),
            scopes=sorted(set(data.scopes)),
            created_by=self.principal.user_id,
        )
        await CredentialDirectoryRepository(self.session).add(
            client_id, "oauth_client", self.principal.tenant_id, row.id
        )
        await emit(
            self.session,
            "identity.oauth_client.created",
            self.principal.tenant_id,
            {"client_id": client_id},
            actor=self.principal.subject,
        )
        return schemas.ClientCreated(
            row.id, client_id, secret, row.name, list(row.scopes), row.created_at
        )

    async def list(self) -> list[schemas.Client]:
        return [to_schema(r) for r in await self.repo.newest_first()]

    async def revoke(self, client_row_id: uuid.UUID) -> None:
        row = await self.repo.get(client_row_id, lock=True)
        if row is None:
            raise ProblemError(404, "No such OAuth client.")
        if row.revoked_at is None:
            await _revoke(self.session, self.principal, [row])


async def revoke_clients_created_by(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID
) -> None:
    """Revoke every live client ``user_id`` created (their deactivation, docs/auth.md)."""
    rows = await OAuthClientRepository(session).live_created_by_locked(user_id)
    await _revoke(session, principal, rows)


async def _revoke(session: AsyncSession, principal: Principal, rows: list[OAuthClient]) -> None:
    if not rows:
        return
    await OAuthClientRepository(session).mark_revoked([row.id for row in rows], datetime.now(UTC))
    for row in rows:
        # the client's live access tokens end with it
        revoke_subject_on_commit(session, principal.tenant_id, f"client:{row.client_id}")
        await emit(
            session,
            "identity.oauth_client.revoked",
            principal.tenant_id,
            {"client_id": row.client_id},
            actor=principal.subject,
        )


class _Client(ClientMixin):  # type: ignore[misc]
    def __init__(self, row: OAuthClient) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = list(self.row.scopes)
        if not scope:
            return " ".join(allowed)
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return constant_time_equal(self.row.secret_hash, sha256_hex(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class _Headers(dict[str, str]):
    """Case-insensitive header lookup (authlib asks for ``Authorization``)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class _ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, headers: dict[str, str], form: dict[str, str]) -> None:
        # TLS ends at the ingress; authlib only looks at the scheme of this URI.
        super().__init__(
            "POST",
            "https://crm/api/v1/oauth/token",
            headers=_Headers({k.lower(): v for k, v in headers.items()}),
        )
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, client: _Client | None, tenant: Tenant | None, keys: KeyStore) -> None:
        super().__init__(scopes_supported=None)
        self._client = client
        self._tenant = tenant
        self._keys = keys
        self.register_grant(_ClientCredentials)
        self.register_token_generator("default", self._generate)

    def _generate(
        self,
        *,
        grant_type: str,
        client: _Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        assert self._tenant is not None
        # Never more than the client may have; no scope asked = everything it may have.
        scopes = client.get_allowed_scope(scope).split()
        token, ttl, _jti = self._keys.mint_now(
            tenant_id=self._tenant.id,
            subject=f"client:{client.get_client_id()}",
            kind="client",
            scopes=scopes,
            plan=self._tenant.plan,
            extra={"client_id": client.get_client_id()},
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": " ".join(scopes),
        }

    def query_client(self, client_id: str) -> _Client | None:
        if self._client is not None and self._client.get_client_id() == client_id:
            return self._client
        return None

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        return None  # self-contained JWT: nothing to store

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


def _claimed_client_id(headers: dict[str, str], form: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode()
            return unquote(decoded.split(":", 1)[0])
        except (ValueError, UnicodeDecodeError):
            return None
    return form.get("client_id")


async def token_response(
    db: Database, keys: KeyStore, headers: dict[str, str], form: dict[str, str]
) -> tuple[int, Any, list[tuple[str, str]]]:
    """Run the token endpoint: (status, JSON body, headers) per RFC 6749."""
    client: _Client | None = None
    tenant: Tenant | None = None
    client_id = _claimed_client_id(headers, form)
    if client_id and len(client_id) <= 64:
        async with db.platform_session() as session:
            entry = await CredentialDirectoryRepository(session).get(client_id)
            if entry is not None and entry.kind == "oauth_client":
                tenant = await TenantRepository(session).get(entry.tenant_id)
        if entry is not None and tenant is not None and tenant.status not in CLOSED:
            async with db.tenant_session(tenant.id) as session:
                row = await OAuthClientRepository(session).get(entry.credential_id)
            if row is not None and row.revoked_at is None:
                client = _Client(row)
    await keys.ready()
    server = _Server(client, tenant, keys)
    status, body, out_headers = server.create_token_response(_Request(headers, form))
    return status, body, list(out_headers or [])


async def introspect(verifier: Any, redis: Any, token: str) -> dict[str, Any]:
    """RFC 7662: ``{"active": false}`` for anything not a live token of ours."""
    try:
        principal = await verifier.verify(token)
    except ProblemError:
        return {"active": False}
    # The signature was just verified: reading the payload for exp/iat/iss/aud is safe.
    claims = msgspec.json.decode(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    # Revoked one by one, by session, or by its subject's not-before (deactivation, role
    # change, client revoked); Redis away: a short-lived token stays valid (documented).
    if await AccessCheck(redis).revoked(principal):
        return {"active": False}
    answer: dict[str, Any] = {
        "active": True,
        "sub": principal.subject,
        "tid": str(principal.tenant_id),
        "token_type": "Bearer",
        "kind": principal.kind,
    }
    if principal.scopes is not None:
        answer["scope"] = " ".join(sorted(principal.scopes))
    if principal.kind == "client":
        answer["client_id"] = principal.subject.split(":", 1)[1]
    answer.update({k: claims[k] for k in ("exp", "iat", "iss", "aud") if k in claims})
    return answer


async def introspect_for(
    verifier: Any, redis: Any, token: str, caller: Principal
) -> dict[str, Any]:
    """``introspect`` for a caller: another tenant's tokens are never described."""
    answer = await introspect(verifier, redis, token)
    if answer.get("active") and answer.get("tid") != str(caller.tenant_id):
        return {"active": False}
    return answer


async def revoke(verifier: Any, redis: Any, token: str, caller: Principal) -> None:
    """RFC 7009: revoke an access token issued to the caller itself.

    Invalid, expired and other tenants' tokens are ignored (200, as the RFC asks for
    invalid tokens: another tenant's token does not exist for the caller). A live token
    of the caller's tenant issued to another subject (user, OAuth client, API key) is
    refused, RFC 7009 §2.1 ("verifies whether the token was issued to the client making
    the revocation request"), with a 400 problem carrying ``error: unauthorized_client``
    (RFC 6749 §5.2), and stays valid: holding someone's token is no right to end it.
    Owners and admins end other people's access by deactivation or session revocation.
    """
    try:
        principal = await verifier.verify(token)
    except ProblemError:
        return
    if principal.tenant_id != caller.tenant_id:
        return
    if principal.subject != caller.subject:
        raise ProblemError(
            400,
            "This token was not issued to you; only its own holder may revoke it.",
            title="Bad Request",
            type_="https://errors.crm.example/oauth-unauthorized-client",
            error="unauthorized_client",
        )
    ttl = 3600
    await revoke_token(redis, principal.tenant_id, principal.token_id, ttl)
