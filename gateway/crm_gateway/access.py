"""Authentication, tenant access and rate limits: one pure ASGI layer.

Per proxied request:

1. **Anonymous routes** (docs/auth.md: sign-up, login, refresh, OAuth token, invitation
   acceptance, plans, the Stripe webhook, ``/.well-known/*``) and unknown paths are
   rate-limited per client IP and passed on untouched (their ``Authorization`` header,
   e.g. OAuth client credentials, goes to identity as sent).
2. Otherwise ``Authorization: Bearer <token>`` is required (401 + ``WWW-Authenticate``).
   A JWT is verified against identity's JWKS (``crm_lib.auth.JWKSVerifier``); an API
   key (``crm_live_``/``crm_test_``) is exchanged for a short-lived JWT at identity
   (cached in Redis), and that JWT replaces the key in the upstream ``Authorization``
   header, so a key never reaches a service. Failed authentications count against the
   client IP's limit.
3. The tenant's access answer (status, plan, limits) is read from identity (cached):
   an unknown tenant is 401.
4. Rate limits per principal and per tenant (limits from the access answer), consumed
   in one Redis call; 429 + ``Retry-After`` when exceeded. The same call checks
   identity's revocation markers (``crm_lib.revocation``: the token's jti, its session,
   its subject's not-before time): a revoked token is 401 (not checked while Redis is
   down).
5. Tenant status: ``provisioning`` 409 (except ``provisioning_readable_paths``),
   ``suspended`` reads only (writes 403 ``…/tenant-suspended``), ``pending_deletion``
   only ``/api/v1/billing…`` and ``/api/v1/tenant…`` (pay or export), ``deleted`` 403.
6. The trusted upstream headers ``x-tenant-id`` and ``x-principal`` are set through
   ``scope["crm.upstream_headers"]`` (clients' copies are always dropped by the proxy),
   and the principal is left in ``scope["crm.principal"]`` for inner layers.

Every answer that passes through here carries ``X-RateLimit-Limit/Remaining/Reset`` of
the most restrictive window that applied (the IP window for anonymous requests).
"""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from crm_gateway.identity import ApiKeyResolver, TenantAccess, TenantAccessCache, is_api_key
from crm_gateway.metrics import AUTH_FAILURES, RATE_LIMITED
from crm_gateway.proxy import ROUTE_KEY, UPSTREAM_HEADERS_KEY, send_problem
from crm_gateway.ratelimit import (
    Decision,
    Limit,
    RateLimiter,
    Revocation,
    ip_limit,
    principal_limit,
    tenant_limit,
)
from crm_gateway.settings import GatewaySettings
from crm_lib.auth import (
    PRINCIPAL_SCOPE_KEY,
    JWKSVerifier,
    Principal,
    bearer_token,
    invalid_token,
)
from crm_lib.http import ProblemError
from crm_lib.revocation import revocation_keys, tenant_status_refusal

#: (method, path) pairs that need no token (docs/auth.md "Anonymous routes").
ANONYMOUS_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/api/v1/signup"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/oauth/token"),
        ("POST", "/api/v1/invitations/accept"),
        ("GET", "/api/v1/plans"),
        ("HEAD", "/api/v1/plans"),
        ("POST", "/api/v1/billing/stripe/webhook"),
    }
)
ANONYMOUS_PREFIXES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"GET", "HEAD"}), "/.well-known/"),
)

RATE_LIMITED_TYPE = "https://errors.crm.example/rate-limited"


def _revocation(principal: Principal) -> Revocation:
    """The keys that mark ``principal``'s token revoked (the services check the same)."""
    markers, not_before = revocation_keys(
        principal.tenant_id, principal.token_id, principal.session_id, principal.subject
    )
    return Revocation(markers, not_before, principal.issued_at)


def is_anonymous(method: str, path: str) -> bool:
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/")
    if (method, path) in ANONYMOUS_ROUTES:
        return True
    return any(method in methods and path.startswith(p) for methods, p in ANONYMOUS_PREFIXES)


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` that puts ``extra`` on the response start (replacing upstream copies)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (n, v)
                for n, v in message.get("headers", ())
                if not n.lower().startswith(b"x-ratelimit-")
            ]
            headers.extend(extra)
            message = {**message, "headers": headers}  # type: ignore[typeddict-item]
        await send(message)

    return wrapped


class AccessLayer:
    """Pure ASGI: authenticate, check the tenant, rate-limit (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: GatewaySettings,
        *,
        verifier: JWKSVerifier,
        api_keys: ApiKeyResolver,
        tenants: TenantAccessCache,
        limiter: RateLimiter,
    ) -> None:
        self.app = app
        self.settings = settings
        self.verifier = verifier
        self.api_keys = api_keys
        self.tenants = tenants
        self.limiter = limiter
        self.anonymous_rpm = max(1, settings.anonymous_requests_per_minute)
        self.provisioning_paths = frozenset(
            p.rstrip("/") for p in settings.provisioning_readable_paths
        )

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        if scope.get(ROUTE_KEY) is None or is_anonymous(method, path):
            await self._anonymous(scope, receive, send)
            return

        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        try:
            token = bearer_token(authorization.decode("latin-1") if authorization else None)
            minted: str | None = None
            if is_api_key(token):
                principal, minted = await self.api_keys.resolve(token)
            else:
                principal = await self.verifier.verify(token)
            access = await self.tenants.get(principal.tenant_id)
            if access is None:
                raise ProblemError(
                    401,
                    "The token's tenant does not exist.",
                    title="Unknown tenant",
                    type_="https://errors.crm.example/invalid-token",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
        except ProblemError as exc:
            AUTH_FAILURES.labels(_reason(exc)).inc()
            await self._refuse_anonymous(scope, send, exc)
            return

        decision = await self.limiter.hit(
            self._limits(principal, access),
            _revocation(principal),
        )
        if decision.revoked:
            AUTH_FAILURES.labels("revoked").inc()
            await self._refuse_anonymous(
                scope, send, invalid_token("The access token has been revoked.")
            )
            return
        send = _with_headers(send, decision.headers())
        if not decision.allowed:
            await self._too_many(scope, send, decision)
            return
        refusal = self._status_refusal(access, method, path)
        if refusal is not None:
            AUTH_FAILURES.labels(f"tenant_{access.status}").inc()
            await _problem(send, path, refusal)
            return

        trusted: list[tuple[bytes, bytes]] = [
            (b"x-tenant-id", str(principal.tenant_id).encode()),
            (b"x-principal", principal.subject.encode()),
        ]
        existing: Any = scope.get(UPSTREAM_HEADERS_KEY)
        scope[UPSTREAM_HEADERS_KEY] = [*existing, *trusted] if existing else trusted
        scope[PRINCIPAL_SCOPE_KEY] = principal
        if minted is not None:
            scope["headers"] = [
                *(h for h in scope["headers"] if h[0] != b"authorization"),
                (b"authorization", b"Bearer " + minted.encode()),
            ]
        await self.app(scope, receive, send)

    # -- helpers -----------------------------------------------------------------------

    def _limits(self, principal: Principal, access: TenantAccess) -> list[Limit]:
        limits = access.limits
        per_principal = limits.requests_per_minute or self.settings.default_requests_per_minute
        per_tenant = (
            limits.tenant_requests_per_minute or self.settings.default_tenant_requests_per_minute
        )
        return [
            principal_limit(principal.tenant_id, principal.subject, max(1, per_principal)),
            tenant_limit(principal.tenant_id, max(1, per_tenant)),
        ]

    def _status_refusal(self, access: TenantAccess, method: str, path: str) -> ProblemError | None:
        return tenant_status_refusal(access.status, method, path, self.provisioning_paths)

    def _client_ip(self, scope: Scope) -> str:
        client = scope.get("client")
        return client[0] if client else "unknown"

    async def _anonymous(self, scope: Scope, receive: Receive, send: Send) -> None:
        decision = await self.limiter.hit([ip_limit(self._client_ip(scope), self.anonymous_rpm)])
        send = _with_headers(send, decision.headers())
        if not decision.allowed:
            await self._too_many(scope, send, decision)
            return
        await self.app(scope, receive, send)

    async def _refuse_anonymous(self, scope: Scope, send: Send, exc: ProblemError) -> None:
        """Answer a failed authentication, counted against the client IP's limit."""
        decision = await self.limiter.hit([ip_limit(self._client_ip(scope), self.anonymous_rpm)])
        send = _with_headers(send, decision.headers())
        if not decision.allowed:
            await self._too_many(scope, send, decision)
            return
        await _problem(send, scope["path"], exc)

    async def _too_many(self, scope: Scope, send: Send, decision: Decision) -> None:
        RATE_LIMITED.labels(decision.refused_by or "unknown").inc()
        await send_problem(
            send,
            429,
            f"Rate limit of {decision.limit} requests per minute exceeded; "
            f"retry in {decision.retry_after} s.",
            title="Too Many Requests",
            type_=RATE_LIMITED_TYPE,
            instance=scope["path"],
        )


def _reason(exc: ProblemError) -> str:
    if exc.status_code == 503:
        return "unavailable"
    if exc.title == "Unknown tenant":
        return "unknown_tenant"
    if exc.title == "Authentication required":
        return "missing"
    return "invalid"


async def _problem(send: Send, path: str, exc: ProblemError) -> None:
    await send_problem(
        send,
        exc.status_code,
        exc.detail,
        title=exc.title,
        type_=exc.type_,
        instance=path,
        extra_headers=[
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in (exc.headers or {}).items()
        ],
    )
