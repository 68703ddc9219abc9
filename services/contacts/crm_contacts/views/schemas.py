"""Wire shapes of saved views (a named filter + sort + columns over contacts or companies)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

UNSET = msgspec.UNSET
U = msgspec.UnsetType
Entity = Literal["contact", "company"]
ViewName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]*\S[^\x00]*$")
]
FilterValue = (
    Annotated[str, msgspec.Meta(max_length=2000)]
    | Annotated[list[Annotated[str, msgspec.Meta(max_length=2000)]], msgspec.Meta(max_length=50)]
)
#: Filters in the list endpoint's query grammar, e.g. ``{"lifecycle_stage": "customer",
#: "cf.score__gte": "10", "tag": ["vip"], "q": "acme"}``.
Filters = Annotated[dict[str, FilterValue], msgspec.Meta(max_length=50)]
Columns = Annotated[list[Annotated[str, msgspec.Meta(max_length=120)]], msgspec.Meta(max_length=60)]
Sort = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]


class SavedViewCreate(msgspec.Struct, forbid_unknown_fields=True):
    entity: Entity
    name: ViewName
    filters: Filters = msgspec.field(default_factory=dict)
    sort: Sort | None = None
    columns: Columns = msgspec.field(default_factory=list)
    #: Shared views are visible to everyone in the tenant (each still sees only the
    #: records their own role lets them see).
    shared: bool = False


class SavedViewUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: ViewName | U = UNSET
    filters: Filters | U = UNSET
    sort: Sort | U | None = UNSET
    columns: Columns | U = UNSET
    shared: bool | U = UNSET


class SavedView(msgspec.Struct):
    id: uuid.UUID
    entity: str
    name: str
    owner_user_id: uuid.UUID | None
    filters: dict[str, str | list[str]]
    sort: str | None
    columns: list[str]
    shared: bool
    version: int
    created_at: datetime
    updated_at: datetime
    #: Whether the caller may change or delete it.
    editable: bool
