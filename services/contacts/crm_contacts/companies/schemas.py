"""Wire shapes of companies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from crm_contacts.records.schemas import Address, CompanySize, CustomValues, TagRef, Tags

UNSET = msgspec.UNSET
U = msgspec.UnsetType
CompanyName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=300, pattern=r"^(?=[\s\S]*\S)[^\x00]*$")
]
Domain = Annotated[
    str,
    msgspec.Meta(
        max_length=255,
        pattern=r"^(?=.{1,255}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
    ),
]
Industry = Annotated[str, msgspec.Meta(min_length=1, max_length=120, pattern=r"^[^\x00]*$")]


class CompanyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: CompanyName
    domain: Domain | None = None
    industry: Industry | None = None
    size: CompanySize | None = None
    address: Address | None = None
    owner_id: uuid.UUID | None = None
    tags: Tags = msgspec.field(default_factory=list)
    custom_fields: CustomValues = msgspec.field(default_factory=dict)


class CompanyUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: CompanyName | U = UNSET
    domain: Domain | U | None = UNSET
    industry: Industry | U | None = UNSET
    size: CompanySize | U | None = UNSET
    address: Address | U | None = UNSET
    owner_id: uuid.UUID | U | None = UNSET
    tags: Tags | U = UNSET
    custom_fields: CustomValues | U = UNSET


class Company(msgspec.Struct):
    id: uuid.UUID
    name: str
    domain: str | None
    industry: str | None
    size: str | None
    address: dict[str, Any]
    owner_id: uuid.UUID | None
    tags: list[TagRef]
    custom_fields: dict[str, Any]
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    updated_by: str | None
    version: int


class CompanyLink(msgspec.Struct, forbid_unknown_fields=True):
    role: Annotated[str, msgspec.Meta(max_length=120, pattern=r"^[^\x00]*$")] | None = None
    primary: bool = False


class LinkedCompany(msgspec.Struct):
    company_id: uuid.UUID
    name: str
    role: str | None
    primary: bool
