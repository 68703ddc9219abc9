"""Wire shapes of team rules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec


class TeamRuleSet(msgspec.Struct, forbid_unknown_fields=True):
    #: read: teammates see each other's records; edit: they also change them.
    access: Literal["read", "edit"]


class TeamRule(msgspec.Struct):
    team_id: uuid.UUID
    access: str
    member_ids: list[uuid.UUID]
    created_at: datetime
