"""What an import run works with: its options, a chunk's rows as candidates or row
errors, a prepared chunk, a chunk's result, and the column layout of the COPY that
creates contacts."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from crm_contacts.contacts.schemas import ContactCreate
from crm_contacts.fields.values import FieldSpec

MODES = ("create", "update", "upsert")
MATCH_KEYS = ("email", "external_id")

#: Columns an import writes (``search_vector`` is generated from ``search_text``).
CREATE_COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "company_id",
    "owner_id",
    "lifecycle_stage",
    "custom_fields",
    "emails",
    "phones",
    "title",
    "address",
    "source",
    "consent",
    "external_id",
    "tag_ids",
    "sensitive_fields",
    "created_by",
    "updated_by",
    "search_text",
)
JSON_COLUMNS = frozenset(
    {"custom_fields", "emails", "phones", "address", "consent", "sensitive_fields"}
)
#: What an update may change (and what a revert restores).
UPDATE_COLUMNS = tuple(c for c in CREATE_COLUMNS if c not in ("id", "created_by", "updated_by"))
#: Positions in a create's COPY tuple (``CREATE_COLUMNS`` order).
ID = CREATE_COLUMNS.index("id")
COMPANY = CREATE_COLUMNS.index("company_id")
OWNER = CREATE_COLUMNS.index("owner_id")
TAGS = CREATE_COLUMNS.index("tag_ids")
SEARCH = CREATE_COLUMNS.index("search_text")
#: Encoded once: an empty JSON object.
EMPTY_JSON = "{}"

json_encoder = msgspec.json.Encoder()


@dataclass
class RowError:
    row_no: int
    column: str | None
    message: str
    value: str | None = None


@dataclass
class Options:
    mode: str = "create"
    match_on: str | None = None
    allow_duplicates: bool = False
    tag_separator: str = ";"
    create_companies: bool = True

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Options:
        return cls(
            mode=raw.get("mode", "create"),
            match_on=raw.get("match_on"),
            allow_duplicates=bool(raw.get("allow_duplicates", False)),
            tag_separator=raw.get("tag_separator") or ";",
            create_companies=bool(raw.get("create_companies", True)),
        )


@dataclass
class DryState:
    """What a dry run remembers across chunks (nothing is written, so rows of earlier
    chunks must be remembered to find repeats)."""

    emails: dict[str, int] = field(default_factory=dict)
    phones: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)


@dataclass
class ChunkResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)
    created_ids: list[uuid.UUID] = field(default_factory=list)
    #: (record id, before-image, version after)
    updates: list[tuple[uuid.UUID, dict[str, Any], int]] = field(default_factory=list)


@dataclass
class Candidate:
    row_no: int
    data: ContactCreate
    emails: list[dict[str, Any]]
    phones: list[dict[str, Any]]
    #: Which optional parts the row actually carries (updates only touch those).
    given: set[str]
    company_name: str | None
    owner_id: uuid.UUID | None
    owner_given: bool
    custom: dict[str, Any]
    #: Primary email / phone (normalised).
    email: str | None = None
    phone: str | None = None
    # Filled by ``RowMapper.prepare`` for rows that may be created (no database
    # needed): custom values validated for a create, the JSON columns encoded, and the
    # search text unless it needs a company name looked up by id.
    clean: dict[str, Any] | RowError | None = None
    encoded: tuple[str, str, str, str] | None = None
    search: str | None = None
    #: The id a create gets, and for a row needing no lookup at all (no company, owner,
    #: tags or custom values) its whole COPY tuple and its batched-event record.
    record_id: uuid.UUID | None = None
    ready: tuple[Any, ...] | None = None
    announced: msgspec.Raw | None = None
    #: The letter/digit runs of ``search`` (dictionary word candidates).
    runs: list[str] | None = None
    #: An owner given by login email (resolved to ``owner_id`` when the chunk runs).
    owner_email: str | None = None


@dataclass
class Prepared:
    """A chunk's rows parsed and validated without the database (see ``prepare``)."""

    rows: list[tuple[int, list[str]]]
    specs: Mapping[str, FieldSpec]
    candidates: list[Candidate]
    errors: list[RowError]


#: Taken keys (email, phone, external id) -> the contact holding it (None: one the
#: importer cannot see, which a row error must not name).
Taken = dict[str, uuid.UUID | None]
