"""Wire shapes of logged activities."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

UNSET = msgspec.UNSET
U = msgspec.UnsetType

#: Kinds a user may log; projected events use "<entity>.<action>" kinds instead.
LoggedKind = Literal["note", "call", "meeting", "email"]
Subject = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
Body = Annotated[str, msgspec.Meta(max_length=100_000)]
Details = Annotated[dict[str, Any], msgspec.Meta(max_length=50)]


class ActivityCreate(msgspec.Struct, forbid_unknown_fields=True):
    kind: LoggedKind
    contact_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    subject: Subject | None = None
    body: Body | None = None
    #: When it happened (defaults to now); e.g. a call logged afterwards.
    occurred_at: datetime | None = None
    #: Free-form extras: duration_minutes, direction, outcome, attendees ...
    details: Details = msgspec.field(default_factory=dict)


class ActivityUpdate(msgspec.Struct, forbid_unknown_fields=True):
    kind: LoggedKind | U = UNSET
    subject: Subject | U | None = UNSET
    body: Body | U | None = UNSET
    occurred_at: datetime | U = UNSET
    details: Details | U = UNSET
