"""Wire shapes of tags."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from crm_contacts.records.schemas import TagName, Tags

Color = Annotated[str, msgspec.Meta(pattern=r"^#[0-9a-fA-F]{6}$")]


class TagCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: TagName
    color: Color | None = None


class TagUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: TagName | msgspec.UnsetType = msgspec.UNSET
    color: Color | msgspec.UnsetType | None = msgspec.UNSET


class TagMerge(msgspec.Struct, forbid_unknown_fields=True):
    #: The tag that survives; the merged tag disappears from every record.
    into_id: uuid.UUID


class Tag(msgspec.Struct):
    id: uuid.UUID
    name: str
    color: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class TagUsage(msgspec.Struct):
    tag: Tag
    contacts: int
    companies: int


class BulkTag(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=1000)]
    tags: Annotated[Tags, msgspec.Meta(min_length=1)]
    action: Literal["add", "remove"] = "add"


class BulkResult(msgspec.Struct):
    updated: list[uuid.UUID]
    #: Records that were not found, not visible or not editable by the caller.
    skipped: list[uuid.UUID]
