"""Wire shapes of the tenant registry."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from crm_identity.plans import Plan as PlanEntry
from crm_identity.users.schemas import Seats
from crm_lib.schema_types import ShortText

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"

Slug = Annotated[str, msgspec.Meta(pattern=SLUG_PATTERN, min_length=2, max_length=63)]
Name = ShortText
Plan = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    slug: Slug
    plan: Plan = "free"


class ServiceState(msgspec.Struct):
    service: str
    state: str
    detail: str | None
    updated_at: datetime


class Tenant(msgspec.Struct):
    id: uuid.UUID
    slug: str
    name: str
    status: str
    status_reason: str | None
    plan: str
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    deleted_at: datetime | None
    services: list[ServiceState] = []


class TenantPage(msgspec.Struct):
    data: list[Tenant]
    next_cursor: str | None


class TenantDeletion(msgspec.Struct, forbid_unknown_fields=True):
    confirm_slug: str


class CurrentTenant(msgspec.Struct):
    tenant: Tenant
    # Seat usage: owners and admins, and API credentials with the scope seats:read;
    # null for everyone else.
    seats: Seats | None
    plan: PlanEntry
