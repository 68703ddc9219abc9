"""Access-token verification: who is calling, for which tenant, with which rights.

The contract is ``docs/auth.md``. Identity signs RFC 9068 access tokens with ES256 and
serves its public keys at ``{identity_url}/.well-known/jwks.json``. The gateway verifies
every token, and so does every service (defence in depth): a service never trusts a
request just because it came through the gateway.

* :class:`Principal` is what a handler sees: tenant, subject, kind, roles, scopes.
* :class:`JWKSVerifier` turns a token into a ``Principal`` or raises a 401
  :class:`~crm_lib.http.ProblemError`. It accepts ES256 only (``none``, ``HS*`` and every
  other algorithm are refused before a key is even looked up), requires ``typ: at+jwt``,
  picks the key by ``kid`` from a cached JWKS and validates ``iss``/``aud``/``exp``/``nbf``
  with a small leeway, ``tid`` and the ``sub`` format. Verified tokens are remembered until
  they expire, so a repeated token costs a dict lookup instead of an ECDSA verification.
* Litestar glue: :func:`install_auth` puts a verifier on ``app.state["token_verifier"]``
  (``crm_lib.service.build_app`` does it for every service), :func:`principal_dependency`
  provides ``principal`` to handlers, :func:`require_roles` and :func:`require_scope` are
  guards answering 403 problem documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol, TypeGuard, cast

import httpx
import msgspec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from litestar import Litestar, Request
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler

from crm_lib.http import ProblemError
from crm_lib.settings import PlatformSettings
from crm_lib.telemetry import describe_error, get_logger

log = get_logger("crm.auth")

Kind = Literal["user", "client", "api_key"]
KINDS: frozenset[str] = frozenset({"user", "client", "api_key"})
ROLES: frozenset[str] = frozenset(
    {"owner", "admin", "sales_manager", "sales_rep", "marketer", "support_agent", "viewer"}
)

#: ``app.state`` key of the verifier used by :func:`authenticate`.
VERIFIER_STATE_KEY = "token_verifier"
#: ``app.state`` key of the per-request revocation / tenant-status check
#: (``crm_lib.revocation.AccessCheck``; ``build_app`` installs it for every service).
ACCESS_CHECK_STATE_KEY = "access_check"
#: ASGI scope key where the verified principal of a request is remembered.
PRINCIPAL_SCOPE_KEY = "crm.principal"

ALGORITHM = "ES256"
_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_MAX_TOKEN_LENGTH = 8192
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_SCOPE_RE = re.compile(r"^(\*|[a-z][a-z0-9_-]*:(read|write|\*))$")

INVALID_TOKEN_TYPE = "https://errors.crm.example/invalid-token"  # noqa: S105 - a URI
FORBIDDEN_TYPE = "https://errors.crm.example/forbidden"
WWW_AUTHENTICATE_INVALID = 'Bearer error="invalid_token"'
WWW_AUTHENTICATE_MISSING = 'Bearer realm="crm"'


class Principal(msgspec.Struct, frozen=True):
    """The verified caller of one request (docs/auth.md)."""

    tenant_id: uuid.UUID
    subject: str  # "user:<uuid>" | "client:<client_id>" | "api_key:<uuid>"
    kind: Kind
    user_id: uuid.UUID | None
    roles: frozenset[str]
    # None for users: their roles decide. A set (possibly empty) for clients and API keys.
    scopes: frozenset[str] | None
    token_id: str
    # ``iat`` (seconds, may be fractional): compared with identity's not-before markers.
    issued_at: float = 0.0
    # ``sid``: the login session (refresh-token family) a user token was minted for.
    session_id: str | None = None

    def allows(self, scope: str) -> bool:
        """Whether the token grants ``scope`` (``"contacts:read"``).

        ``None`` scopes (users) allow everything here: roles decide elsewhere.
        ``*`` allows all, ``<res>:*`` every action on ``res``, ``<res>:write`` implies
        ``<res>:read``.
        """
        scopes = self.scopes
        if scopes is None or "*" in scopes or scope in scopes:
            return True
        resource, _, action = scope.partition(":")
        if f"{resource}:*" in scopes:
            return True
        return action == "read" and f"{resource}:write" in scopes

    def has_role(self, *roles: str) -> bool:
        """Whether the principal holds at least one of ``roles``."""
        return any(role in self.roles for role in roles)


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


JWKS = Mapping[str, Any]
JWKSProvider = Callable[[], Awaitable[JWKS] | JWKS]


def invalid_token(detail: str) -> ProblemError:
    """The 401 every verification failure raises."""
    return ProblemError(
        401,
        detail,
        title="Invalid access token",
        type_=INVALID_TOKEN_TYPE,
        headers={"WWW-Authenticate": WWW_AUTHENTICATE_INVALID},
    )


def missing_token() -> ProblemError:
    return ProblemError(
        401,
        "This endpoint requires 'Authorization: Bearer <token>'.",
        title="Authentication required",
        type_="https://errors.crm.example/unauthenticated",
        headers={"WWW-Authenticate": WWW_AUTHENTICATE_MISSING},
    )


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or a 401."""
    if not header:
        raise missing_token()
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise invalid_token("The Authorization header must be 'Bearer <token>'.")
    return token


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _public_key(jwk: Any) -> tuple[str, ECKey] | None:
    """An ES256 verification key from one JWKS entry, or None if it is not one."""
    if not isinstance(jwk, Mapping):
        return None
    kid = jwk.get("kid")
    if (
        not isinstance(kid, str)
        or not kid
        or jwk.get("kty") != "EC"
        or jwk.get("crv") != "P-256"
        or jwk.get("use", "sig") != "sig"
        or jwk.get("alg", ALGORITHM) != ALGORITHM
    ):
        return None
    public = {k: jwk[k] for k in ("kty", "crv", "x", "y", "kid") if k in jwk}
    try:
        return kid, ECKey.import_key(public)
    except (JoseError, ValueError, TypeError) as exc:
        log.warning("auth.jwks_bad_key", kid=kid, error=describe_error(exc))
        return None


class JWKSVerifier:
    """Verifies ES256 access tokens against identity's JWKS.

    Keys come from (first match):

    * ``jwks=``: a static JWKS document (never refreshed; tests, tools);
    * ``jwks_provider=``: a callable (sync or async) returning the JWKS, e.g. identity
      passing its own keys so it never calls itself over HTTP;
    * otherwise ``GET {settings.identity_url}/.well-known/jwks.json``.

    A fetched JWKS is used for ``settings.jwks_cache_seconds``, then refreshed in the
    background (requests keep using the old keys meanwhile). A token whose ``kid`` is
    unknown triggers an immediate refetch (key rotation), at most once every
    ``min_refetch_seconds``; concurrent refetches share one call. If the JWKS cannot be
    fetched the last good keys stay in use; with no keys at all verification answers 503.
    """

    def __init__(
        self,
        settings: PlatformSettings | None = None,
        *,
        jwks: JWKS | None = None,
        jwks_provider: JWKSProvider | None = None,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        cache_seconds: float | None = None,
        min_refetch_seconds: float = 5.0,
        leeway_seconds: float = 10.0,
        fetch_timeout_seconds: float = 3.0,
        token_cache_size: int = 4096,
    ) -> None:
        settings = settings or PlatformSettings()
        self.issuer = issuer if issuer is not None else settings.jwt_issuer
        self.audience = audience if audience is not None else settings.jwt_audience
        self.jwks_url = jwks_url or f"{settings.identity_url.rstrip('/')}/.well-known/jwks.json"
        self.cache_seconds = (
            cache_seconds if cache_seconds is not None else settings.jwks_cache_seconds
        )
        self.min_refetch_seconds = min_refetch_seconds
        self.leeway = leeway_seconds
        self.fetch_timeout = fetch_timeout_seconds
        self.token_cache_size = token_cache_size
        self._provider = jwks_provider
        self._static = jwks is not None
        self._keys: dict[str, ECKey] = {}
        self._loaded = False
        self._fetched_at = 0.0  # monotonic time of the last successful fetch
        self._attempted_at = -1e9  # monotonic time of the last fetch attempt
        self._task: asyncio.Task[None] | None = None
        # token -> (principal, exp): tokens already verified, until they expire
        self._tokens: dict[str, tuple[Principal, float]] = {}
        #: number of JWKS fetches attempted (observability and tests)
        self.fetches = 0
        if jwks is not None:
            self._install(jwks)

    # -- keys --------------------------------------------------------------------------

    def _install(self, document: JWKS) -> None:
        keys = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(keys, list):
            raise ValueError("a JWKS document needs a 'keys' list")
        found = dict(filter(None, (_public_key(jwk) for jwk in keys)))
        if set(self._keys) - set(found):
            # a key was withdrawn: forget tokens verified with it
            self._tokens.clear()
        self._keys = found
        self._loaded = True
        self._fetched_at = time.monotonic()

    async def _fetch(self) -> JWKS:
        if self._provider is not None:
            result = self._provider()
            if inspect.isawaitable(result):
                result = await result
            return cast(JWKS, result)
        async with httpx.AsyncClient(timeout=self.fetch_timeout, trust_env=False) as client:
            response = await client.get(self.jwks_url, headers={"accept": "application/json"})
            response.raise_for_status()
            document = msgspec.json.decode(response.content)
        if not isinstance(document, dict):
            raise ValueError("JWKS is not a JSON object")
        return document

    async def _refresh_once(self) -> None:
        self.fetches += 1
        try:
            self._install(await self._fetch())
        except Exception as exc:
            log.warning("auth.jwks_fetch_failed", url=self.jwks_url, error=describe_error(exc))

    async def refresh(self) -> None:
        """Fetch the JWKS now; concurrent callers share one fetch."""
        if self._static:
            return
        if self._task is None or self._task.done():
            self._attempted_at = time.monotonic()
            self._task = asyncio.ensure_future(self._refresh_once())
        await asyncio.shield(self._task)

    def _refetch_allowed(self) -> bool:
        running = self._task is not None and not self._task.done()
        # with no keys at all, retry sooner (identity may just be starting)
        interval = self.min_refetch_seconds if self._loaded else min(1.0, self.min_refetch_seconds)
        return running or time.monotonic() - self._attempted_at >= interval

    async def _key(self, kid: str) -> ECKey | None:
        if self._static:
            return self._keys.get(kid)
        if not self._loaded:
            if self._refetch_allowed():
                await self.refresh()
            if not self._loaded:
                raise ProblemError(
                    503,
                    "The token signing keys are not available right now.",
                    headers={"Retry-After": str(max(1, round(self.min_refetch_seconds)))},
                )
        elif (
            time.monotonic() - self._fetched_at > self.cache_seconds
            and (self._task is None or self._task.done())
            and time.monotonic() - self._attempted_at >= self.min_refetch_seconds
        ):
            # stale: refresh in the background, keep answering with the keys we have
            self._attempted_at = time.monotonic()
            self._task = asyncio.ensure_future(self._refresh_once())
        key = self._keys.get(kid)
        if key is None and self._refetch_allowed():
            await self.refresh()  # maybe a new key (rotation)
            key = self._keys.get(kid)
        return key

    # -- tokens ------------------------------------------------------------------------

    async def verify(self, token: str) -> Principal:
        """The principal of a valid access token; otherwise a 401 ``ProblemError``."""
        cached = self._tokens.get(token)
        if cached is not None:
            if time.time() <= cached[1] + self.leeway:
                return cached[0]
            self._tokens.pop(token, None)
        principal, exp = await self._verify(token)
        tokens = self._tokens
        if len(tokens) >= self.token_cache_size:
            # make room in bulk (amortised): expired tokens first, then the oldest tenth
            now = time.time()
            for stale in [t for t, (_, e) in tokens.items() if e + self.leeway < now]:
                del tokens[stale]
            excess = len(tokens) - self.token_cache_size * 9 // 10
            for old in list(itertools.islice(tokens, max(0, excess))):
                del tokens[old]
        tokens[token] = (principal, exp)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        if not token or len(token) > _MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise invalid_token("The access token is malformed.")
        try:
            compact = jws.extract_compact(token.encode("ascii"))
            header = compact.headers()
        except (JoseError, ValueError, TypeError, UnicodeError) as exc:
            raise invalid_token("The access token is malformed.") from exc
        if header.get("alg") != ALGORITHM:
            raise invalid_token(f"Only {ALGORITHM} access tokens are accepted.")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _TYPES:
            raise invalid_token("The token is not an access token (typ at+jwt).")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise invalid_token("The access token names no signing key (kid).")
        key = await self._key(kid)
        if key is None:
            raise invalid_token("The access token is signed with an unknown key.")
        try:
            valid = jws.validate_compact(compact, key, algorithms=[ALGORITHM])
        except (JoseError, ValueError, TypeError) as exc:
            raise invalid_token("The access token signature is invalid.") from exc
        if not valid or compact.payload is None:
            raise invalid_token("The access token signature is invalid.")
        try:
            claims = msgspec.json.decode(compact.payload)
        except msgspec.DecodeError as exc:
            raise invalid_token("The access token claims are malformed.") from exc
        if not isinstance(claims, dict):
            raise invalid_token("The access token claims are malformed.")
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> tuple[Principal, float]:
        now = time.time()
        if claims.get("iss") != self.issuer:
            raise invalid_token("The access token has the wrong issuer.")
        aud = claims.get("aud")
        if not (aud == self.audience or (isinstance(aud, list) and self.audience in aud)):
            raise invalid_token("The access token is not meant for this API (aud).")
        raw_exp = claims.get("exp")
        if not _number(raw_exp):
            raise invalid_token("The access token has no expiry.")
        exp = float(raw_exp)
        if now > exp + self.leeway:
            raise invalid_token("The access token has expired.")
        nbf = claims.get("nbf")
        if nbf is not None and (not _number(nbf) or now + self.leeway < nbf):
            raise invalid_token("The access token is not valid yet.")
        iat = claims.get("iat")
        if iat is not None and (not _number(iat) or now + self.leeway < iat):
            raise invalid_token("The access token was issued in the future.")
        tid = claims.get("tid")
        if not isinstance(tid, str) or not _UUID_RE.match(tid):
            raise invalid_token("The access token names no valid tenant (tid).")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise invalid_token("The access token has no token id (jti).")
        sid = claims.get("sid")
        if sid is not None and (not isinstance(sid, str) or not sid or len(sid) > 128):
            raise invalid_token("The access token's session id (sid) is malformed.")

        sub = claims.get("sub")
        if not isinstance(sub, str):
            raise invalid_token("The access token has no subject.")
        prefix, _, ident = sub.partition(":")
        kind = claims.get("kind", prefix)
        if kind not in KINDS or prefix != kind:
            raise invalid_token("The access token subject is malformed.")
        user_id: uuid.UUID | None = None
        if kind == "client":
            if not _CLIENT_ID_RE.match(ident):
                raise invalid_token("The access token subject is malformed.")
        else:
            if not _UUID_RE.match(ident):
                raise invalid_token("The access token subject is malformed.")
            if kind == "user":
                user_id = uuid.UUID(ident)

        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise invalid_token("The access token roles are malformed.")
        scope = claims.get("scope")
        scopes: frozenset[str] | None
        if scope is None:
            scopes = None if kind == "user" else frozenset()
        elif isinstance(scope, str):
            scopes = frozenset(s for s in scope.split(" ") if _SCOPE_RE.match(s))
        else:
            raise invalid_token("The access token scope is malformed.")

        principal = Principal(
            tenant_id=uuid.UUID(tid),
            subject=sub,
            kind=cast(Kind, kind),
            user_id=user_id,
            roles=frozenset(roles),
            scopes=scopes,
            token_id=jti,
            issued_at=float(iat) if iat is not None else 0.0,
            session_id=sid,
        )
        return principal, exp

    async def aclose(self) -> None:
        """Cancel a background JWKS refresh (nothing else is held open)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


# -- Litestar integration --------------------------------------------------------------


def install_auth(target: Litestar | AppConfig | Any, verifier: TokenVerifier) -> None:
    """Make ``verifier`` the app's token verifier (``app.state["token_verifier"]``).

    ``target`` is a Litestar app, its ``AppConfig`` (e.g. from an ``on_app_init`` hook),
    a ``State`` or the plain ``state`` dict given to the app factory.
    """
    if isinstance(target, Litestar | AppConfig):
        target.state[VERIFIER_STATE_KEY] = verifier
    else:
        target[VERIFIER_STATE_KEY] = verifier


def _scope_cache(connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], connection.scope)


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The verified principal of a request (verified once, then remembered on the scope).

    401 when the token is missing or invalid, or when the gateway's ``X-Tenant-ID``
    header names another tenant than the token's ``tid``.
    """
    scope = _scope_cache(connection)
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    if isinstance(principal, Principal):
        return principal
    verifier = connection.app.state.get(VERIFIER_STATE_KEY)
    if verifier is None:
        raise RuntimeError("no token verifier installed: call crm_lib.auth.install_auth")
    token = bearer_token(connection.headers.get("authorization"))
    principal = await verifier.verify(token)
    tenant_header = connection.headers.get("x-tenant-id")
    if tenant_header is not None:
        try:
            same = uuid.UUID(tenant_header.strip()) == principal.tenant_id
        except ValueError:
            same = False
        if not same:
            raise invalid_token("The access token belongs to another tenant.")
    # Revocation (deactivation, role change, logout, revoked client or key) and the tenant's
    # status take effect on the next request here too, not only at the gateway.
    check = connection.app.state.get(ACCESS_CHECK_STATE_KEY)
    if check is not None:
        refusal = await check.refusal(principal, scope.get("method", "GET"), scope["path"])
        if refusal is not None:
            raise refusal
    scope[PRINCIPAL_SCOPE_KEY] = principal
    return principal


async def _provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return await authenticate(request)


def principal_dependency() -> Provide:
    """``Provide`` for a ``principal: Principal`` handler parameter."""
    return Provide(_provide_principal)


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def require_roles(*roles: str) -> Guard:
    """Guard: the caller must hold one of ``roles`` (403 problem otherwise)."""
    unknown = set(roles) - ROLES
    if unknown or not roles:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await authenticate(connection)
        if not principal.has_role(*roles):
            raise ProblemError(
                403,
                f"This action requires one of the roles: {', '.join(roles)}.",
                type_=FORBIDDEN_TYPE,
            )

    return guard


def require_scope(scope: str) -> Guard:
    """Guard: the token must grant ``scope`` (users pass: their roles decide)."""
    if not _SCOPE_RE.match(scope):
        raise ValueError(f"bad scope {scope!r}")

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await authenticate(connection)
        if not principal.allows(scope):
            raise ProblemError(
                403,
                f"The access token lacks the scope {scope}.",
                type_=FORBIDDEN_TYPE,
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )

    return guard
