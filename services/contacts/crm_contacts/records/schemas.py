"""Wire pieces shared by contacts and companies."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec

from crm_lib.schema_types import NON_BLANK

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NON_BLANK)]
Line = Annotated[str, msgspec.Meta(max_length=300, pattern=r"^[^\x00]*$")]
TagName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NON_BLANK)]
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=320,
        pattern=r"^[^@\s\x00]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
    ),
]
Phone = Annotated[str, msgspec.Meta(max_length=40, pattern=r"^\+?[0-9 ().\-/]{3,39}$")]
Label = Annotated[str, msgspec.Meta(max_length=40, pattern=r"^[^\x00]*$")]
CustomValues = Annotated[dict[str, Any], msgspec.Meta(max_length=300)]
Tags = Annotated[list[TagName], msgspec.Meta(max_length=100)]


class Address(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    street: Line | None = None
    city: Line | None = None
    region: Line | None = None
    postal_code: Annotated[str, msgspec.Meta(max_length=20, pattern=r"^[^\x00]*$")] | None = None
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")] | None = None


class EmailEntry(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    address: Email
    label: Label | None = None


class PhoneEntry(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    number: Phone
    label: Label | None = None


class Consent(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    email_marketing: bool | None = None
    sms: bool | None = None
    phone_calls: bool | None = None
    tracking: bool | None = None


LifecycleStage = Literal[
    "subscriber",
    "lead",
    "marketing_qualified",
    "sales_qualified",
    "opportunity",
    "customer",
    "evangelist",
    "other",
]
CompanySize = Literal["1-10", "11-50", "51-200", "201-500", "501-1000", "1001-5000", "5001+"]


class TagRef(msgspec.Struct):
    id: uuid.UUID
    name: str


class Duplicate(msgspec.Struct):
    id: uuid.UUID
    reason: str
    #: False for a record the caller cannot see: answers name neither its id nor its name.
    visible: bool = True

    def public(self) -> dict[str, str | None]:
        return {"id": str(self.id) if self.visible else None, "reason": self.reason}
