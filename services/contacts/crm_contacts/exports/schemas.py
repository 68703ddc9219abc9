"""Wire shapes of export jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec


class ExportCreate(msgspec.Struct, forbid_unknown_fields=True):
    entity: Literal["contacts", "companies"] = "contacts"
    format: Literal["csv", "json"] = "csv"
    #: The list endpoint's filters: a query string (``lifecycle_stage=lead&tag=vip``) or
    #: an object of parameter → value (or list of values).
    query: str | dict[str, Any] | None = None
    #: Fields to export (default: every field the API returns).
    fields: Annotated[list[str], msgspec.Meta(max_length=100)] | None = None
