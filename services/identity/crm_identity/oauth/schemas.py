"""Wire shapes of OAuth2 clients."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from crm_identity.api_keys.schemas import Scope
from crm_lib.schema_types import ShortText


class ClientCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: ShortText
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=50)]


class Client(msgspec.Struct):
    id: uuid.UUID
    client_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ClientCreated(msgspec.Struct):
    id: uuid.UUID
    client_id: str
    client_secret: str
    name: str
    scopes: list[str]
    created_at: datetime
