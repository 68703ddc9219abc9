"""Wire shapes of teams."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from crm_lib.schema_types import ShortText

TeamName = ShortText


class TeamCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: TeamName
    member_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=1000)] = msgspec.field(
        default_factory=list
    )


class TeamUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: TeamName


class Team(msgspec.Struct):
    id: uuid.UUID
    name: str
    member_ids: list[uuid.UUID]
    created_at: datetime
    updated_at: datetime
    version: int
