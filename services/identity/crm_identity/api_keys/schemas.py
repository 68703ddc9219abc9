"""Wire shapes of API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from crm_lib.schema_types import ShortText

Scope = Annotated[str, msgspec.Meta(pattern=r"^(\*|[a-z][a-z_-]{0,39}:(read|write|\*))$")]


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: ShortText
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=50)]
    expires_at: datetime | None = None
    environment: Annotated[str, msgspec.Meta(pattern=r"^(live|test)$")] | None = None


class ApiKey(msgspec.Struct):
    id: uuid.UUID
    name: str
    prefix: str
    last4: str
    scopes: list[str]
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreated(msgspec.Struct):
    id: uuid.UUID
    name: str
    key: str
    prefix: str
    last4: str
    scopes: list[str]
    expires_at: datetime | None
    created_at: datetime


class ResolveRequest(msgspec.Struct):
    key: Annotated[str, msgspec.Meta(max_length=200)]


class Resolved(msgspec.Struct):
    tenant_id: uuid.UUID
    key_id: uuid.UUID
    scopes: list[str]
    access_token: str
    expires_in: int
