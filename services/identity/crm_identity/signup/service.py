"""Self-serve sign-up: tenant, identity schema, owner and tokens in one transaction.

Identity builds its own tenant schema inline (fast path, tens of milliseconds)
so the owner exists the moment the request returns; the other services build
theirs through the saga, and ``GET /api/v1/tenant`` shows when all are done.
Any failure rolls everything back: nothing half-created.

Sign-up tells a stranger nothing about who has an account where:

* an email that already has an account (in any tenant) signs up like a new one: a
  new tenant with its own owner (one email may belong to several tenants, as with
  invitations); the address is told by email that a new company was created with it
  and how to log in to it (``tenant``), so the answer never differs;
* a requested or derived slug that is taken (or reserved) gets a ``-2``, ``-3``…
  suffix instead of a 409. That the answer's slug differs from the requested one
  does tell that the slug exists, so such collisions are counted per client address
  (``crm:ip:<address>:signup-slug-collisions``, one hour); past
  ``signup_slug_collisions_per_ip_per_hour`` every sign-up from that address answers
  429 until the hour is over. Sign-ups whose slug is free are not limited here (the
  gateway's per-address limit applies), so a new company is working within seconds.
"""

from __future__ import annotations

import re
import unicodedata
import uuid

from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.app_schema import SCHEMA
from crm_identity.emails import normalize_email
from crm_identity.mail.service import request_email
from crm_identity.models import User
from crm_identity.plans import PLANS
from crm_identity.security import PasswordHashing, password_problems
from crm_identity.sessions.service import SessionService
from crm_identity.settings import IdentitySettings
from crm_identity.signup import schemas
from crm_identity.signup.repository import SignupRepository
from crm_identity.tenants.repository import TenantRepository
from crm_identity.tenants.schemas import TenantCreate
from crm_identity.tenants.service import RESERVED_SLUGS, TenantService
from crm_identity.users.repository import UserRepository
from crm_identity.users.service import to_schema as user_schema
from crm_lib.events import emit
from crm_lib.http import ProblemError
from crm_lib.migrations import provision_schema
from crm_lib.telemetry import get_logger
from crm_lib.tenancy import Database, bind_tenant, tenant_schema

log = get_logger("crm.identity.signup")


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:50].strip("-")
    return slug if len(slug) >= 2 else f"team-{uuid.uuid4().hex[:6]}"


def collisions_key(address: str) -> str:
    return f"crm:ip:{address}:signup-slug-collisions"


def _already_registered_notice(company: str, slug: str, base_url: str) -> str:
    return (
        f"A new company account, {company!r} (company slug {slug!r}), was just created with\n"
        "this email address, which already belongs to at least one other company account.\n\n"
        "Your existing account(s) are unchanged. Logging in without a company signs you in\n"
        f"to your first company; to sign in to the new one, give the company slug {slug!r}\n"
        f"(field `tenant`) at {base_url}.\n\n"
        "If you did not create it, someone else used your address: nothing in your existing\n"
        "companies changed, and you can ignore this message or tell our support.\n"
    )


class SlugProbeLimit:
    """Sign-ups whose slug was taken, per client address and hour (Redis; fail-open)."""

    WINDOW_SECONDS = 3600

    def __init__(self, redis: Redis, limit: int) -> None:
        self.redis = redis
        self.limit = limit

    async def check(self, address: str) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(collisions_key(address))
                pipe.ttl(collisions_key(address))
                count, ttl = await pipe.execute()
        except Exception as exc:  # documented fail-open: Redis down must not stop sign-ups
            log.warning("signup.probe_limit_unavailable", error=type(exc).__name__)
            return
        if count is not None and int(count) >= self.limit:
            raise ProblemError(
                429,
                "Too many sign-ups from this address; try again later.",
                title="Too Many Requests",
                type_="https://errors.crm.example/rate-limited",
                headers={"Retry-After": str(max(int(ttl), 1))},
            )

    async def record(self, address: str) -> None:
        key = collisions_key(address)
        try:
            if await self.redis.incr(key) == 1:
                await self.redis.expire(key, self.WINDOW_SECONDS)
        except Exception as exc:
            log.warning("signup.probe_limit_unavailable", error=type(exc).__name__)


class SignupService:
    def __init__(
        self,
        db: Database,
        settings: IdentitySettings,
        hashing: PasswordHashing,
        sessions: SessionService,
        redis: Redis,
    ) -> None:
        self.db = db
        self.settings = settings
        self.hashing = hashing
        self.sessions = sessions
        self.probes = SlugProbeLimit(redis, settings.signup_slug_collisions_per_ip_per_hour)

    def _validate(self, data: schemas.SignupRequest) -> tuple[str, str]:
        errors: list[dict[str, str]] = []
        email = normalize_email(data.email)
        problems = password_problems(
            data.password, email=email, min_length=self.settings.password_min_length
        )
        if problems:
            errors.append({"field": "password", "message": "; ".join(problems)})
        if data.plan not in PLANS:
            errors.append({"field": "plan", "message": f"one of {', '.join(PLANS)}"})
        if not data.company_name.strip():
            errors.append({"field": "company_name", "message": "must not be blank"})
        if not data.admin_name.strip():
            errors.append({"field": "admin_name", "message": "must not be blank"})
        if errors:
            raise ProblemError(
                422,
                "The sign-up data is not valid.",
                title="Validation failed",
                type_="https://errors.crm.example/validation",
                errors=errors,
            )
        return email, data.slug or slugify(data.company_name)

    async def _free_slug(self, session: AsyncSession, base: str) -> str:
        """``base`` if free, else the first free ``base-2``, ``base-3``… (never a 409)."""
        taken = await TenantRepository(session).taken_slugs(base)
        if base not in taken and base not in RESERVED_SLUGS:
            return base
        for n in range(2, 1000):
            candidate = f"{base[:58]}-{n}"
            if candidate not in taken:
                return candidate
        return f"{base[:50]}-{uuid.uuid4().hex[:8]}"

    async def signup(self, data: schemas.SignupRequest, address: str) -> schemas.SignupResponse:
        await self.probes.check(address)
        email, base_slug = self._validate(data)
        password_hash = await self.hashing.hash(data.password)
        plan = PLANS[data.plan]
        tenant_id, user_id = uuid.uuid4(), uuid.uuid4()
        try:
            async with self.db.platform_session() as session:
                repo = SignupRepository(session)
                known = bool(await UserRepository(session).tenants_for_email(email))
                slug = await self._free_slug(session, base_slug)
                tenants = TenantService(session, self.settings.provisioning_services)
                tenant = await tenants.create(
                    TenantCreate(name=data.company_name.strip(), slug=slug, plan=plan.id),
                    actor="signup",
                    tenant_id=tenant_id,
                    seats=plan.default_seats,
                    trial_days=self.settings.trial_days,
                )
                conn = await bind_tenant(await session.connection(), tenant_id)
                await provision_schema(conn, tenant_id, SCHEMA)
                user = await repo.insert_owner(
                    conn,
                    id=user_id,
                    email=email,
                    full_name=data.admin_name.strip(),
                    password_hash=password_hash,
                    roles=["owner"],
                    status="active",
                )
                await repo.add_login(email, tenant_id, user_id)
                # Identity's schema exists now: its registry replica says so at once, so
                # identity's own consumers accept this tenant's events immediately.
                await repo.register_replica(
                    tenant_id, slug, tenant_schema(tenant_id), SCHEMA.tenant_track.head
                )
                user_row = User(**user._mapping)
                tokens = await self.sessions.issue(session, tenant, user_row)
                await emit(
                    session,
                    "identity.user.created",
                    tenant_id,
                    {
                        "user_id": str(user_id),
                        "email": email,
                        "roles": ["owner"],
                        "source": "signup",
                    },
                    actor="signup",
                )
                if known:  # the answer is the same; the address is told
                    await request_email(
                        session,
                        tenant_id,
                        to=email,
                        subject="A new company account was created with your email address",
                        body=_already_registered_notice(
                            data.company_name.strip(), slug, self.settings.app_base_url
                        ),
                        kind="signup_existing_email",
                        actor="signup",
                    )
                tenant_view = await tenants.get(tenant_id)
        except IntegrityError as exc:  # a concurrent sign-up won the same slug
            raise ProblemError(
                409, "That company slug was just taken; try again.", title="Conflict"
            ) from exc
        if slug != base_slug:
            await self.probes.record(address)
        return schemas.SignupResponse(
            tenant=tenant_view,
            user=user_schema(user_row),
            tokens=tokens,
            status_url="/api/v1/tenant",
        )
