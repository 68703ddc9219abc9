"""Wire shapes of invitations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from crm_lib.schema_types import ShortText

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
FullName = ShortText


class InvitationCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    roles: Annotated[list[str], msgspec.Meta(min_length=1, max_length=7)] = msgspec.field(
        default_factory=lambda: ["sales_rep"]
    )
    team_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )


class Invitation(msgspec.Struct):
    id: uuid.UUID
    email: str
    roles: list[str]
    status: str
    expires_at: datetime
    sent_count: int
    created_at: datetime
    accepted_at: datetime | None


class InvitationAccept(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=10, max_length=300)]
    full_name: FullName
    password: Password
