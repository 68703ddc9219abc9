"""Wire shapes of custom field definitions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from crm_lib.schema_types import ShortText

FieldType = Literal[
    "text", "number", "date", "boolean", "single_select", "multi_select", "email", "url", "currency"
]
Entity = Literal["contact", "company"]
FieldKey = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Option = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00]*\S[^\x00]*$")]
Role = Literal[
    "owner", "admin", "sales_manager", "sales_rep", "marketer", "support_agent", "viewer"
]


class Constraints(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: number/currency: value bounds; text: length bounds; date: ISO date bounds.
    min: float | str | None = None
    max: float | str | None = None
    #: number: integers only.
    integer: bool = False
    #: currency: the default ISO 4217 code when a plain amount is written.
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")] | None = None


class CustomFieldCreate(msgspec.Struct, forbid_unknown_fields=True):
    entity: Entity
    key: FieldKey
    label: ShortText
    type: FieldType
    required: bool = False
    options: Annotated[list[Option], msgspec.Meta(max_length=500)] = msgspec.field(
        default_factory=list
    )
    constraints: Constraints = msgspec.field(default_factory=Constraints)
    sensitive: bool = False
    readable_by: Annotated[list[Role], msgspec.Meta(max_length=7)] = msgspec.field(
        default_factory=list
    )
    position: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0


class CustomFieldUpdate(msgspec.Struct, forbid_unknown_fields=True):
    label: ShortText | msgspec.UnsetType = msgspec.UNSET
    required: bool | msgspec.UnsetType = msgspec.UNSET
    options: Annotated[list[Option], msgspec.Meta(max_length=500)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    constraints: Constraints | msgspec.UnsetType = msgspec.UNSET
    readable_by: Annotated[list[Role], msgspec.Meta(max_length=7)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    position: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | msgspec.UnsetType = msgspec.UNSET
    archived: bool | msgspec.UnsetType = msgspec.UNSET


class CustomField(msgspec.Struct):
    id: uuid.UUID
    entity: str
    key: str
    label: str
    type: str
    required: bool
    options: list[str]
    constraints: dict[str, Any]
    sensitive: bool
    readable_by: list[str]
    position: int
    archived: bool
    version: int
    created_at: datetime
    updated_at: datetime
