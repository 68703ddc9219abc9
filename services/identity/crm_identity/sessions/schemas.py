"""Wire shapes of login sessions and tokens."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
OpaqueToken = Annotated[str, msgspec.Meta(min_length=10, max_length=300)]


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    tenant: Slug | None = None


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: OpaqueToken


class LogoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: OpaqueToken | None = None
    everywhere: bool = False


class TokenPair(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    tenant_id: uuid.UUID
    user_id: uuid.UUID
