"""Wire shapes of import jobs."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Target = Annotated[str, msgspec.Meta(max_length=80)]


class ImportRun(msgspec.Struct, forbid_unknown_fields=True):
    """How to run an uploaded file: column → target mapping, mode and options."""

    #: CSV column → ``first_name`` … or ``cf.<key>``; null/absent skips the column.
    #: Absent as a whole: the suggested mapping.
    mapping: dict[str, Target | None] | None = None
    mode: Literal["create", "update", "upsert"] = "create"
    #: The unique key of update/upsert.
    match_on: Literal["email", "external_id"] | None = None
    dry_run: bool = False
    #: Create rows even if a contact with the same email/phone exists.
    allow_duplicates: bool = False
    tag_separator: Annotated[str, msgspec.Meta(min_length=1, max_length=3)] = ";"
    #: Create companies named in a ``company`` column that do not exist yet.
    create_companies: bool = True
