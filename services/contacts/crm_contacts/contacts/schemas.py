"""Wire shapes of contacts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from crm_contacts.records.schemas import (
    Address,
    Consent,
    CustomValues,
    EmailEntry,
    LifecycleStage,
    Line,
    Name,
    PhoneEntry,
    TagRef,
    Tags,
)

UNSET = msgspec.UNSET
U = msgspec.UnsetType
Emails = Annotated[list[EmailEntry], msgspec.Meta(max_length=20)]
Phones = Annotated[list[PhoneEntry], msgspec.Meta(max_length=20)]
Source = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=r"^[a-z0-9_\-]+$")]
ExternalId = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00\s]+$")]


class ContactCreate(msgspec.Struct, forbid_unknown_fields=True):
    first_name: Name | None = None
    last_name: Name | None = None
    #: Emails and phones: the first is the primary (used for dedupe and upsert).
    emails: Emails = msgspec.field(default_factory=list)
    phones: Phones = msgspec.field(default_factory=list)
    title: Line | None = None
    company_id: uuid.UUID | None = None
    address: Address | None = None
    source: Source | None = None
    lifecycle_stage: LifecycleStage = "lead"
    owner_id: uuid.UUID | None = None
    tags: Tags = msgspec.field(default_factory=list)
    custom_fields: CustomValues = msgspec.field(default_factory=dict)
    consent: Consent | None = None
    external_id: ExternalId | None = None


class ContactUpdate(msgspec.Struct, forbid_unknown_fields=True):
    first_name: Name | U | None = UNSET
    last_name: Name | U | None = UNSET
    emails: Emails | U = UNSET
    phones: Phones | U = UNSET
    title: Line | U | None = UNSET
    company_id: uuid.UUID | U | None = UNSET
    address: Address | U | None = UNSET
    source: Source | U | None = UNSET
    lifecycle_stage: LifecycleStage | U = UNSET
    owner_id: uuid.UUID | U | None = UNSET
    tags: Tags | U = UNSET
    #: Merged into the stored values; a key set to null clears that field.
    custom_fields: CustomValues | U = UNSET
    consent: Consent | U = UNSET
    external_id: ExternalId | U | None = UNSET


class Contact(msgspec.Struct):
    id: uuid.UUID
    first_name: str | None
    last_name: str | None
    email: str | None
    emails: list[dict[str, Any]]
    phone: str | None
    phones: list[dict[str, Any]]
    title: str | None
    company_id: uuid.UUID | None
    address: dict[str, Any]
    source: str | None
    lifecycle_stage: str
    owner_id: uuid.UUID | None
    tags: list[TagRef]
    custom_fields: dict[str, Any]
    consent: dict[str, Any]
    external_id: str | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    updated_by: str | None
    version: int
