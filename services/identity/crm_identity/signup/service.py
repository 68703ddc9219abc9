"""Self-serve sign-up: tenant, identity schema, owner and tokens in one transaction.

Identity builds its own tenant schema inline (fast path, tens of milliseconds)
so the owner exists the moment the request returns; the other services build
theirs through the saga, and ``GET /api/v1/tenant`` shows when all are done.
Any failure rolls everything back: nothing half-created.
"""

from __future__ import annotations

import re
import unicodedata
import uuid

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from crm_identity.app_schema import SCHEMA
from crm_identity.emails import normalize_email
from crm_identity.models import LoginDirectory, Tenant, User
from crm_identity.plans import PLANS
from crm_identity.security import PasswordHashing, password_problems
from crm_identity.sessions.service import SessionService
from crm_identity.settings import IdentitySettings
from crm_identity.signup import schemas
from crm_identity.tenants.schemas import TenantCreate
from crm_identity.tenants.service import RESERVED_SLUGS, TenantService
from crm_identity.users.service import to_schema as user_schema
from crm_lib.events import emit
from crm_lib.http import ProblemError
from crm_lib.migrations import provision_schema
from crm_lib.platform_tables import TenantRegistryRow
from crm_lib.tenancy import Database, bind_tenant, tenant_schema


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:50].strip("-")
    return slug if len(slug) >= 2 else f"team-{uuid.uuid4().hex[:6]}"


class SignupService:
    def __init__(
        self,
        db: Database,
        settings: IdentitySettings,
        hashing: PasswordHashing,
        sessions: SessionService,
    ) -> None:
        self.db = db
        self.settings = settings
        self.hashing = hashing
        self.sessions = sessions

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

    async def _free_slug(self, session: object, base: str, explicit: bool) -> str:
        taken_q = select(Tenant.slug).where(Tenant.slug.like(f"{base}%"))
        taken = set((await session.execute(taken_q)).scalars())  # type: ignore[attr-defined]
        if base not in taken and base not in RESERVED_SLUGS:
            return base
        if explicit:
            raise ProblemError(
                409,
                f"The company slug '{base}' is taken.",
                title="Conflict",
                type_="https://errors.crm.example/slug-taken",
            )
        for n in range(2, 1000):
            candidate = f"{base[:58]}-{n}"
            if candidate not in taken:
                return candidate
        return f"{base[:50]}-{uuid.uuid4().hex[:8]}"

    async def signup(self, data: schemas.SignupRequest) -> schemas.SignupResponse:
        email, base_slug = self._validate(data)
        password_hash = await self.hashing.hash(data.password)
        plan = PLANS[data.plan]
        tenant_id, user_id = uuid.uuid4(), uuid.uuid4()
        try:
            async with self.db.platform_session() as session:
                exists = (
                    await session.execute(
                        select(LoginDirectory.email).where(LoginDirectory.email == email)
                    )
                ).first()
                if exists is not None:
                    raise ProblemError(
                        409,
                        "An account with this email already exists; log in instead.",
                        title="Conflict",
                        type_="https://errors.crm.example/email-taken",
                    )
                slug = await self._free_slug(session, base_slug, data.slug is not None)
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
                user = (
                    await conn.execute(
                        insert(User)
                        .values(
                            id=user_id,
                            email=email,
                            full_name=data.admin_name.strip(),
                            password_hash=password_hash,
                            roles=["owner"],
                            status="active",
                        )
                        .returning(User)
                    )
                ).one()
                await session.execute(
                    insert(LoginDirectory).values(email=email, tenant_id=tenant_id, user_id=user_id)
                )
                # Identity's schema exists now: its registry replica says so at once, so
                # identity's own consumers accept this tenant's events immediately.
                await session.execute(
                    insert(TenantRegistryRow).values(
                        tenant_id=tenant_id,
                        slug=slug,
                        status="active",
                        schema_name=tenant_schema(tenant_id),
                        schema_version=SCHEMA.tenant_track.head,
                    )
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
                tenant_view = await tenants.get(tenant_id)
        except IntegrityError as exc:  # a concurrent sign-up won the same slug or email
            raise ProblemError(
                409, "That company slug or email was just taken; try again.", title="Conflict"
            ) from exc
        return schemas.SignupResponse(
            tenant=tenant_view,
            user=user_schema(user_row),
            tokens=tokens,
            status_url="/api/v1/tenant",
        )
