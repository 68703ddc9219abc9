"""Wire shapes of users and seats."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from crm_lib.schema_types import ShortText

FullName = ShortText
RoleList = Annotated[list[str], msgspec.Meta(min_length=1, max_length=7)]


class User(msgspec.Struct):
    id: uuid.UUID
    email: str
    full_name: str
    roles: list[str]
    status: str
    team_ids: list[uuid.UUID]
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True):
    full_name: FullName | msgspec.UnsetType = msgspec.UNSET
    roles: RoleList | msgspec.UnsetType = msgspec.UNSET


class Seats(msgspec.Struct):
    limit: int
    active_users: int
    pending_invitations: int
    used: int
    available: int
