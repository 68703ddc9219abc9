"""The import write path: validate a chunk of rows in bulk, then write it set-based.

Each row is turned into the API's ``ContactCreate`` shape and validated by msgspec
with the very same types (names, emails, phones, address, lifecycle stage, external
id), then normalised like ``ContactService`` (emails lower-cased, phone digits,
custom fields through ``fields.values.validate_values``, search text). Creates go
in with one ``COPY`` into the tenant's ``contacts`` table; updates are copied into
a temporary table and applied with one ``UPDATE … FROM``. Field history rows are
copied too. Everything happens in the caller's transaction, which also advances the
job's checkpoint, so a chunk is either entirely written or not at all.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import Text, any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.companies.schemas import CompanyCreate
from crm_contacts.companies.service import CompanyService
from crm_contacts.contacts.schemas import ContactCreate
from crm_contacts.contacts.service import CONTACT, ContactService, phone_digits, search_text
from crm_contacts.fields.values import FieldErrors, FieldSpec, validate_values
from crm_contacts.imports.csvfile import TOO_LARGE
from crm_contacts.models import Company, Contact, Member
from crm_contacts.records.repository import ADD_WORDS_SQL, dictionary_words, word_runs
from crm_contacts.records.service import REDACTED, jsonable, unreadable_fields
from crm_lib.events import emit
from crm_lib.http import ProblemError

STANDARD_TARGETS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "title",
    "company",
    "company_id",
    "lifecycle_stage",
    "owner",
    "tags",
    "source",
    "external_id",
    "address.street",
    "address.city",
    "address.region",
    "address.postal_code",
    "address.country",
    "consent.email_marketing",
    "consent.sms",
    "consent.phone_calls",
    "consent.tracking",
)
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
OWNER_RULE = "must be the id or login email of an active user of this tenant"
_PATH = re.compile(r"at `\$\.([a-z_]+)(?:\[\d+\])?(?:\.([a-z_]+))?")
_STAGE_SEP = re.compile(r"[\s\-]+")
_json = msgspec.json.Encoder()
#: Positions in a create's COPY tuple (``CREATE_COLUMNS`` order).
_ID = CREATE_COLUMNS.index("id")
_COMPANY = CREATE_COLUMNS.index("company_id")
_OWNER = CREATE_COLUMNS.index("owner_id")
_TAGS = CREATE_COLUMNS.index("tag_ids")
_SEARCH = CREATE_COLUMNS.index("search_text")
#: Encoded once: an empty JSON object, and the history value of every import create.
_EMPTY_JSON = "{}"
_CREATED_JSON = _json.encode("import").decode()
#: Words already split off (``dictionary_words``, the same rule as ``ADD_WORDS_SQL``) into
#: the search dictionary: sorted, so concurrent writers lock them in one order.
_ADD_WORD_LIST_SQL = (
    "INSERT INTO search_words (word) SELECT w FROM unnest($1::text[]) AS w"
    " ORDER BY 1 ON CONFLICT DO NOTHING"
)
_HISTORY_COLUMNS = ["entity", "record_id", "field", "old_value", "new_value", "reason", "actor"]
#: Batched record events of big imports: at most this many records, or about this many
#: bytes, per event (NATS refuses messages over 1 MB).
EVENT_BATCH_RECORDS = 500
EVENT_BATCH_BYTES = 512 * 1024
#: Plain text targets (the trimmed cell is the value).
_PLAIN = frozenset({"first_name", "last_name", "title", "source", "external_id"})
_TRUE = frozenset({"true", "yes", "y", "1", "x"})
_FALSE = frozenset({"false", "no", "n", "0", ""})


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
    # Filled by ``ContactImporter.prepare`` for rows that may be created (no database
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


class _Extra:
    """Per-row values a mapped cell contributes besides the API payload."""

    __slots__ = ("company", "custom", "owner")

    def __init__(self) -> None:
        self.company: str | None = None
        self.owner: str | None = None
        self.custom: dict[str, Any] = {}


#: Taken keys (email, phone, external id) -> the contact holding it (None: one the
#: importer cannot see, which a row error must not name).
Taken = dict[str, uuid.UUID | None]

#: A compiled mapping target: (cell value, payload, extra) -> an error message or None.
Handler = Callable[[str, dict[str, Any], _Extra], str | None]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a chunk is prepared: it allocates tens of
    thousands of small containers that all stay alive, so each young-generation pass
    would find nothing to free (measured: half the CPU of ``prepare``). Nothing made
    there forms cycles; reference counting frees it all. Collection resumes after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _new_ids(count: int) -> list[uuid.UUID]:
    """``count`` random (version 4) UUIDs from one read of the OS random source."""
    raw = os.urandom(16 * count)
    return [uuid.UUID(bytes=raw[i : i + 16], version=4) for i in range(0, 16 * count, 16)]


def batch_record(
    record_id: uuid.UUID,
    owner_id: uuid.UUID | None,
    version: int,
    action: str,
    fields: Mapping[str, Any] | None,
) -> msgspec.Raw:
    """One record of a batched import event, JSON-encoded once."""
    record: dict[str, Any] = {
        "contact_id": record_id,
        "owner_id": owner_id,
        "version": version,
        "action": action,
    }
    if fields is not None:
        record["fields"] = fields
    return msgspec.Raw(_json.encode(record))


async def announce_batch(
    session: AsyncSession,
    event_type: str,
    tenant_id: uuid.UUID | str,
    import_id: uuid.UUID,
    actor: str | None,
    records: list[msgspec.Raw],
) -> None:
    """Records of a big import (or its revert) as a few outbox events in the caller's
    transaction: at most ``EVENT_BATCH_RECORDS`` records or about ``EVENT_BATCH_BYTES``
    each, far below NATS' 1 MB message limit."""
    batch: list[msgspec.Raw] = []
    size = 0
    for i, record in enumerate(records):
        batch.append(record)
        size += len(record)
        last = i == len(records) - 1
        if last or len(batch) >= EVENT_BATCH_RECORDS or size >= EVENT_BATCH_BYTES:
            await emit(
                session,
                event_type,
                tenant_id,
                {"import_id": str(import_id), "records": batch},
                actor=actor,
            )
            batch, size = [], 0


def _naming(record_id: uuid.UUID | None) -> str:
    """How a row error names an existing contact: by id if the importer sees it."""
    return f": {record_id}" if record_id is not None else " (one you cannot see)"


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("must be true or false (yes/no, 1/0)")


def custom_cell(spec: FieldSpec, raw: str, separator: str) -> Any:
    """A CSV cell as the JSON value the API would receive for this custom field."""
    kind = spec.type
    if kind == "number":
        try:
            number = float(raw.replace(",", "")) if "." in raw or "e" in raw.lower() else int(raw)
        except ValueError:
            return raw  # validation reports "must be a number"
        return number
    if kind == "boolean":
        try:
            return _bool(raw)
        except ValueError:
            return raw
    if kind == "multi_select":
        return [v.strip() for v in raw.split(separator) if v.strip()]
    if kind == "currency":
        match = re.fullmatch(r"([A-Z]{3})?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)\s*([A-Z]{3})?", raw)
        if not match:
            return raw
        amount_text = match.group(2).replace(",", "")
        amount: float | int = float(amount_text) if "." in amount_text else int(amount_text)
        code = match.group(1) or match.group(3)
        return {"amount": amount, **({"currency": code} if code else {})}
    return raw


class ContactImporter:
    """Validates and writes chunks of one import job for one caller."""

    def __init__(
        self,
        session: AsyncSession,
        svc: ContactService,
        job_id: uuid.UUID,
        columns: list[str],
        mapping: Mapping[str, str | None],
        options: Options,
        *,
        emit_record_events: bool,
    ) -> None:
        self.session = session
        self.svc = svc
        self.access = svc.access
        self.job_id = job_id
        self.columns = columns
        self.options = options
        self.emit_record_events = emit_record_events
        self.targets: list[tuple[int, str]] = []
        self.column_of: dict[str, str] = {}
        self.width = len(columns)
        self.index = {c: i for i, c in enumerate(columns)}
        for column, target in mapping.items():
            if target:
                self.targets.append((self.index[column], target))
                self.column_of[target] = column
        self.may_reassign = self.access.may_reassign()

    # ------------------------------------------------------------------ validation
    def _column(self, path_field: str, sub: str | None) -> str | None:
        if path_field == "emails":
            return self.column_of.get("email")
        if path_field == "phones":
            return self.column_of.get("phone")
        if path_field in ("address", "consent") and sub:
            return self.column_of.get(f"{path_field}.{sub}")
        return self.column_of.get(path_field)

    def _cell_value(self, cells: list[str], column: str | None) -> str | None:
        if column is None:
            return None
        i = self.index[column]
        return cells[i][:200] if i < len(cells) else None

    def _handler(self, target: str, specs: Mapping[str, FieldSpec]) -> Handler:
        """The code one mapped target runs per row, chosen once (no per-row dispatch)."""
        separator = self.options.tag_separator
        if target in _PLAIN:

            def plain(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                payload[target] = value
                return None

            return plain
        if target == "lifecycle_stage":
            stages: dict[str, str] = {}

            def stage(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                normal = stages.get(value)
                if normal is None:
                    normal = _STAGE_SEP.sub("_", value.lower())
                    if len(stages) < 1000:  # a file has a handful of distinct stages
                        stages[value] = normal
                payload["lifecycle_stage"] = normal
                return None

            return stage
        if target == "email":

            def email(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                payload["emails"] = [{"address": value}]
                return None

            return email
        if target == "phone":

            def phone(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                payload["phones"] = [{"number": value}]
                return None

            return phone
        if target == "tags":

            def tags(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                payload["tags"] = [t.strip() for t in value.split(separator) if t.strip()]
                return None

            return tags
        if target == "company":

            def company(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                extra.company = value[:300]
                return None

            return company
        if target == "company_id":

            def company_id(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                payload["company_id"] = value
                return None

            return company_id
        if target == "owner":

            def owner(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                extra.owner = value
                return None

            return owner
        if target.startswith("address."):
            part = target.split(".", 1)[1]
            upper = part == "country"

            def address(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                payload.setdefault("address", {})[part] = value.upper() if upper else value
                return None

            return address
        if target.startswith("consent."):
            purpose = target.split(".", 1)[1]

            def consent(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                try:
                    payload.setdefault("consent", {})[purpose] = _bool(value)
                except ValueError as exc:
                    return str(exc)
                return None

            return consent
        if target.startswith("cf."):
            key = target[3:]
            spec = specs.get(key)

            def custom(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
                extra.custom[key] = custom_cell(spec, value, separator) if spec else value
                return None

            return custom

        def ignored(value: str, payload: dict[str, Any], extra: _Extra) -> str | None:
            return None  # the controller accepts only known targets

        return ignored

    def compile(self, specs: Mapping[str, FieldSpec]) -> list[tuple[int, str, Handler]]:
        """The mapping as (cell index, top-level field, handler), once per chunk's specs."""
        return [(i, t.split(".", 1)[0], self._handler(t, specs)) for i, t in self.targets]

    def build(
        self, row_no: int, cells: list[str], specs: Mapping[str, FieldSpec]
    ) -> Candidate | RowError:
        """The row as the API's create shape, validated by the API's rules."""
        return self._build(row_no, cells, self.compile(specs))

    def _build(
        self, row_no: int, cells: list[str], plan: list[tuple[int, str, Handler]]
    ) -> Candidate | RowError:
        if len(cells) != self.width:
            return RowError(
                row_no,
                None,
                f"has {len(cells)} cells; the header has {self.width} columns",
            )
        payload: dict[str, Any] = {}
        extra = _Extra()
        given: set[str] = set()
        for i, top, handle in plan:
            raw = cells[i]
            if raw == TOO_LARGE:
                return RowError(row_no, self.columns[i], "field is too large (max 32768 chars)")
            value = raw.strip()
            if not value:
                continue
            given.add(top)
            problem = handle(value, payload, extra)
            if problem is not None:
                return RowError(row_no, self.columns[i], problem, value[:200])
        try:
            data = msgspec.convert(payload, ContactCreate)
        except msgspec.ValidationError as exc:
            message = str(exc)
            match = _PATH.search(message)
            column = self._column(match.group(1), match.group(2)) if match else None
            return RowError(
                row_no, column, message.split(" - at ")[0], self._cell_value(cells, column)
            )
        emails = [{"address": e.address.strip().lower()} for e in data.emails]
        phones = []
        for entry in data.phones:
            number = phone_digits(entry.number)
            if len(number.lstrip("+")) < 3:
                return RowError(
                    row_no, self.column_of.get("phone"), "has too few digits", entry.number
                )
            phones.append({"number": number})
        owner_id: uuid.UUID | None = None
        owner_given = False
        owner_raw = extra.owner
        owner_email: str | None = None
        if owner_raw is not None and self.may_reassign:
            if "@" in owner_raw:
                # A user's login email: resolved against the members read model per chunk.
                owner_email = owner_raw.strip().lower()
            else:
                try:
                    owner_id = uuid.UUID(owner_raw)
                except ValueError:
                    return RowError(
                        row_no, self.column_of.get("owner"), OWNER_RULE, owner_raw[:200]
                    )
            owner_given = True
        return Candidate(
            row_no,
            data,
            emails,
            phones,
            given,
            extra.company,
            owner_id,
            owner_given,
            extra.custom,
            emails[0]["address"] if emails else None,
            phones[0]["number"] if phones else None,
            owner_email=owner_email,
        )

    def prepare(
        self,
        rows: list[tuple[int, list[str]]],
        specs: Mapping[str, FieldSpec],
        pause: Callable[[], None] | None = None,
    ) -> Prepared:
        """Parse and validate a chunk without the database: pure CPU, safe in a thread
        (the job runner prepares the next chunk while this one's writes are in flight;
        there ``pause`` runs every 16 rows to hand the interpreter back to the event
        loop, so the statements in flight are not held up waiting for the GIL)."""
        with _gc_paused():
            return self._prepare(rows, specs, pause)

    def _prepare(
        self,
        rows: list[tuple[int, list[str]]],
        specs: Mapping[str, FieldSpec],
        pause: Callable[[], None] | None,
    ) -> Prepared:
        plan = self.compile(specs)
        may_create = self.options.mode != "update"
        candidates: list[Candidate] = []
        errors: list[RowError] = []
        for n, (row_no, cells) in enumerate(rows, 1):
            built = self._build(row_no, cells, plan)
            if n % 16 == 0 and pause is not None:
                pause()
            if isinstance(built, RowError):
                errors.append(built)
                continue
            candidates.append(built)
        if may_create:
            ids = _new_ids(len(candidates))
            for n, (row, record_id) in enumerate(zip(candidates, ids, strict=True), 1):
                self._precompute(row, record_id, specs)
                if n % 16 == 0 and pause is not None:
                    pause()
        return Prepared(rows, specs, candidates, errors)

    def _precompute(
        self, row: Candidate, record_id: uuid.UUID, specs: Mapping[str, FieldSpec]
    ) -> None:
        """What a create of this row needs that no lookup can change."""
        data = row.data
        row.record_id = record_id
        row.clean = clean = self._custom(row, specs, creating=True)
        row.encoded = encoded = self._encoded(row)
        if row.company_name is None and data.company_id is None:
            row.search = self._search(row, None)
            if clean == {} and not row.owner_given and not data.tags:
                actor = self.access.actor
                record: tuple[Any, ...] = (
                    record_id,
                    data.first_name,
                    data.last_name,
                    row.email,
                    row.phone,
                    None,
                    self.access.user_id,
                    data.lifecycle_stage,
                    _EMPTY_JSON,
                    encoded[0],
                    encoded[1],
                    data.title,
                    encoded[2],
                    data.source,
                    encoded[3],
                    data.external_id,
                    [],
                    _EMPTY_JSON,
                    actor,
                    actor,
                    row.search,
                )
                row.ready = record
                if not self.emit_record_events:
                    row.announced = self._imported(record, row, specs)
        elif row.company_name is not None:
            row.search = self._search(row, row.company_name)
        if row.search is not None:
            row.runs = word_runs(row.search)

    @staticmethod
    def _encoded(row: Candidate) -> tuple[str, str, str, str]:
        data = row.data
        return (
            _json.encode(row.emails).decode(),
            _json.encode(row.phones).decode(),
            _json.encode(data.address).decode() if data.address is not None else _EMPTY_JSON,
            _json.encode(data.consent).decode() if data.consent is not None else _EMPTY_JSON,
        )

    @staticmethod
    def _search(row: Candidate, company_name: str | None) -> str:
        data = row.data
        return search_text(
            {
                "first_name": data.first_name,
                "last_name": data.last_name,
                "emails": row.emails,
                "phones": row.phones,
                "external_id": data.external_id,
            },
            company_name,
        )

    def _custom(
        self, row: Candidate, specs: Mapping[str, FieldSpec], creating: bool
    ) -> dict[str, Any] | RowError:
        refused = unreadable_fields(self.access, specs, row.custom)
        if refused:
            # Checked when the run starts too; this catches a definition changed since.
            return RowError(
                row.row_no,
                self.column_of.get(f"cf.{refused[0]}"),
                "a sensitive field your role cannot read cannot be imported by it either",
            )
        try:
            return validate_values(specs, row.custom, creating=creating)
        except FieldErrors as exc:
            first = exc.errors[0]
            key = first["field"].removeprefix("custom_fields.")
            column = self.column_of.get(f"cf.{key}")
            raw = row.custom.get(key)
            return RowError(
                row.row_no,
                column,
                "; ".join(e["message"] for e in exc.errors if e["field"] == first["field"]),
                None if raw is None else str(raw)[:200],
            )

    # ------------------------------------------------------------------ lookups
    async def _existing_by(self, column: str, values: list[str]) -> dict[str, list[Contact]]:
        if not values:
            return {}
        model_col = getattr(Contact, column)
        keys = bindparam("keys", values, type_=ARRAY(Text))  # one array, not a bind per key
        stmt = select(Contact).where(model_col == any_(keys), Contact.deleted_at.is_(None))
        out: dict[str, list[Contact]] = {}
        for row in (await self.session.execute(stmt.with_for_update())).scalars():
            out.setdefault(getattr(row, column), []).append(row)
        return out

    async def _taken(
        self, emails: set[str], phones: set[str], externals: set[str]
    ) -> tuple[Taken, Taken, Taken]:
        """Live contacts already holding any of these primary emails, phones or external
        ids: one query per chunk (arrays, not thousands of bind parameters). The id is
        None for a contact the importer cannot see."""
        found: tuple[Taken, Taken, Taken] = (
            {},
            {},
            {},
        )
        if not (emails or phones or externals):
            return found
        rows = await self.session.execute(
            text(
                "SELECT email, phone, external_id, id, owner_id FROM contacts"
                " WHERE deleted_at IS NULL"
                " AND (email = ANY(CAST(:emails AS text[])) OR phone = ANY(CAST(:phones AS text[]))"
                " OR external_id = ANY(CAST(:externals AS text[])))"
            ),
            {"emails": list(emails), "phones": list(phones), "externals": list(externals)},
        )
        by_email, by_phone, by_external = found
        for email, phone, external_id, found_id, owner_id in rows.all():
            # A record the importer cannot see is reported without its id.
            record_id = found_id if self.access.may_read(owner_id) else None
            if email in emails:
                by_email.setdefault(email, record_id)
            if phone in phones:
                by_phone.setdefault(phone, record_id)
            if external_id in externals:
                by_external.setdefault(external_id, record_id)
        return found

    async def _company_names(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Names of live companies by id (creates naming a company by id)."""
        if not ids:
            return {}
        rows = await self.session.execute(
            select(Company.id, Company.name).where(
                Company.id.in_(list(ids)), Company.deleted_at.is_(None), *self._visible_companies()
            )
        )
        return {company_id: name for company_id, name in rows.all()}

    def _visible_companies(self) -> list[Any]:
        """A contact is linked only to a company the importer sees (as in the API)."""
        owners = self.access.readable_owners
        return [] if owners is None else [Company.owner_id.in_(sorted(owners))]

    async def _companies(self, names: set[str], dry_run: bool) -> dict[str, uuid.UUID | None]:
        if not names:
            return {}
        lowered = {n.lower(): n for n in names}
        rows = await self.session.execute(
            select(func.lower(Company.name), Company.id).where(
                func.lower(Company.name).in_(list(lowered)),
                Company.deleted_at.is_(None),
                *self._visible_companies(),
            )
        )
        found: dict[str, uuid.UUID | None] = {}
        for name, company_id in rows.all():
            found.setdefault(name, company_id)
        for low, name in lowered.items():
            if low in found:
                continue
            if dry_run or not self.options.create_companies:
                found[low] = None
                continue
            companies = CompanyService(self.session, self.svc.ctx)
            try:
                async with self.session.begin_nested():
                    row = await companies.create(CompanyCreate(name=name), allow_duplicate=True)
                found[low] = row.id
            except ProblemError:
                found[low] = None
        return found

    async def _owners_by_email(self, rows: list[Candidate]) -> None:
        """Owner columns holding a user's login email: one members lookup per chunk."""
        if not rows:
            return
        found = await self.session.execute(
            select(func.lower(Member.email), Member.user_id).where(
                func.lower(Member.email).in_(
                    sorted({r.owner_email for r in rows if r.owner_email})
                ),
                Member.active,
            )
        )
        by_email: dict[str, uuid.UUID] = dict(found.all())
        for row in rows:
            row.owner_id = by_email.get(row.owner_email or "")

    async def _active_owners(self, ids: set[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        rows = await self.session.scalars(
            select(Member.user_id).where(Member.user_id.in_(list(ids)), Member.active)
        )
        return set(rows)

    async def _already_imported(self, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Records this job created or changed in an earlier chunk (a key repeated in
        the file): each record is touched at most once per import, so revert is exact."""
        if not ids:
            return set()
        rows = await self.session.execute(
            text(
                "SELECT m.id FROM unnest(CAST(:ids AS uuid[])) AS m(id) WHERE EXISTS ("
                " SELECT 1 FROM import_chunks c WHERE c.job_id = :job"
                " AND c.created_ids @> ARRAY[m.id]) OR EXISTS ("
                " SELECT 1 FROM import_updates u WHERE u.job_id = :job AND u.record_id = m.id)"
            ),
            {"ids": ids, "job": self.job_id},
        )
        return {r[0] for r in rows.all()}

    # ------------------------------------------------------------------ the chunk
    async def process(
        self,
        seq: int,
        rows: list[tuple[int, list[str]]],
        *,
        dry: DryState | None = None,
        prepared: Prepared | None = None,
        writing: Callable[[], None] | None = None,
    ) -> ChunkResult:
        """Validate and write one chunk; ``prepared`` is ``prepare(rows, …)`` done ahead
        (used only if the custom field definitions are still the same); ``writing`` is
        called when the lookups are done and the writes begin."""
        result = ChunkResult()
        specs = await self.svc.specs()
        options = self.options
        if prepared is None or prepared.specs != specs:
            prepared = self.prepare(rows, specs)
        candidates = prepared.candidates
        result.errors.extend(prepared.errors)

        # Which rows match existing records (update / upsert)?
        matches: dict[int, Contact] = {}
        if options.mode in ("update", "upsert"):
            key = options.match_on or "email"
            keyed: dict[str, Candidate] = {}
            kept = []
            for row in candidates:
                value = self._key_of(row, key)
                if value is None:
                    result.errors.append(
                        RowError(row.row_no, self.column_of.get(key), f"needs a {key} to match on")
                    )
                    continue
                earlier = keyed.get(value) or None
                first_row = dry.keys.get(value) if dry is not None else None
                if earlier is not None or first_row is not None:
                    result.errors.append(
                        RowError(
                            row.row_no,
                            self.column_of.get(key),
                            f"repeats the {key} of row "
                            f"{earlier.row_no if earlier else first_row} of this file",
                            value[:200],
                        )
                    )
                    continue
                keyed[value] = row
                kept.append(row)
            candidates = kept
            existing = await self._existing_by(key, list(keyed))
            repeated = await self._already_imported([r.id for rs in existing.values() for r in rs])
            kept = []
            for row in candidates:
                value = self._key_of(row, key)
                assert value is not None
                found = existing.get(value, [])
                refusal: str | None = None
                if len(found) > 1:
                    seen = [str(f.id) for f in found if self.access.may_read(f.owner_id)]
                    refusal = f"{len(found)} contacts have this {key}" + (
                        ": " + ", ".join(seen[:3]) if seen else ""
                    )
                elif found and found[0].id in repeated:
                    refusal = f"repeats the {key} of an earlier row of this file"
                elif found and not self.access.may_read(found[0].owner_id):
                    refusal = f"a contact with this {key} exists that you cannot change"
                elif found and not self.access.may_write(found[0].owner_id):
                    refusal = f"you cannot change the contact {found[0].id}"
                elif not found and options.mode == "update":
                    refusal = f"no contact has this {key}"
                if refusal is not None:
                    result.errors.append(
                        RowError(row.row_no, self.column_of.get(key), refusal, value[:200])
                    )
                    continue
                if found:
                    matches[row.row_no] = found[0]
                if dry is not None:
                    dry.keys[value] = row.row_no
                kept.append(row)
            candidates = kept

        creates = [r for r in candidates if r.row_no not in matches]
        updates = [r for r in candidates if r.row_no in matches]

        # Creates: same rules as POST /contacts (needs a name/email/phone, no duplicate).
        creates = await self._check_creates(creates, result, dry)

        # Companies and owners (shared lookups).
        names = {r.company_name for r in creates + updates if r.company_name}
        companies = await self._companies(names, dry is not None)
        if not self.options.allow_duplicates:
            creates = await self._check_similar_names(creates, companies, result, dry)
        await self._owners_by_email([r for r in candidates if r.owner_email])
        owners = await self._active_owners({r.owner_id for r in candidates if r.owner_id})
        tag_names = {t for r in creates + updates for t in r.data.tags}
        tag_ids: dict[str, uuid.UUID] = {}
        if tag_names and dry is None:
            ordered = sorted(tag_names, key=str.lower)
            for name, tag_id in zip(ordered, await self.svc.tags.resolve(ordered), strict=True):
                tag_ids[name.strip().lower()] = tag_id

        # Companies named by id (creates and updates): live ones the importer sees.
        by_id = await self._company_names(
            {
                r.data.company_id
                for r in creates + updates
                if r.company_name is None and r.data.company_id
            }
        )
        new_rows: list[tuple[Any, ...]] = []
        sources: list[Candidate] = []
        for row in creates:
            made = await self._create_values(row, specs, companies, by_id, owners, tag_ids, dry)
            if isinstance(made, RowError):
                result.errors.append(made)
                continue
            new_rows.append(made)
            sources.append(row)
        changed: list[tuple[Contact, dict[str, Any], dict[str, Any]]] = []
        for row in updates:
            record = matches[row.row_no]
            values = await self._update_values(
                row, record, specs, companies, by_id, owners, tag_ids, dry
            )
            if isinstance(values, RowError):
                result.errors.append(values)
            elif values:
                changed.append((record, values, self._before(record, values)))
            else:
                result.unchanged += 1

        result.failed = len(result.errors)
        result.created = len(new_rows)
        result.updated = len(changed)
        if writing is not None:
            writing()
        if dry is None:
            await self._write_creates(new_rows, sources, specs, result)
            await self._write_updates(seq, changed, result)
        return result

    @staticmethod
    def _key_of(row: Candidate, key: str) -> str | None:
        if key == "email":
            return row.emails[0]["address"] if row.emails else None
        return row.data.external_id

    async def _check_creates(
        self, rows: list[Candidate], result: ChunkResult, dry: DryState | None
    ) -> list[Candidate]:
        emails, phones, externals = await self._taken(
            {r.email for r in rows if r.email is not None},
            {r.phone for r in rows if r.phone is not None},
            {r.data.external_id for r in rows if r.data.external_id},
        )
        seen_email: dict[str, int] = {}
        seen_phone: dict[str, int] = {}
        seen_ext: dict[str, int] = {}
        check = not self.options.allow_duplicates
        dry_emails = dry.emails if dry is not None else None
        dry_phones = dry.phones if dry is not None else None
        kept = []
        for row in rows:
            data = row.data
            if not (data.first_name or data.last_name or row.emails or row.phones):
                result.errors.append(
                    RowError(row.row_no, None, "a contact needs a name, an email or a phone")
                )
                continue
            email = row.email
            phone = row.phone
            ext = data.external_id
            problem: RowError | None = None
            if ext is not None:
                earlier = seen_ext.get(ext) or (dry.keys.get("x:" + ext) if dry else None)
                if ext in externals:
                    problem = RowError(
                        row.row_no,
                        self.column_of.get("external_id"),
                        "a contact with this external_id already exists" + _naming(externals[ext]),
                        ext,
                    )
                elif earlier:
                    problem = RowError(
                        row.row_no,
                        self.column_of.get("external_id"),
                        f"repeats the external_id of row {earlier} of this file",
                        ext,
                    )
            if problem is None and check:
                if email is not None:
                    problem = self._duplicate(row, "email", email, emails, seen_email, dry_emails)
                if problem is None and phone is not None:
                    problem = self._duplicate(row, "phone", phone, phones, seen_phone, dry_phones)
            if problem is not None:
                result.errors.append(problem)
                continue
            if email is not None:
                seen_email.setdefault(email, row.row_no)
                if dry_emails is not None:
                    dry_emails.setdefault(email, row.row_no)
            if phone is not None:
                seen_phone.setdefault(phone, row.row_no)
                if dry_phones is not None:
                    dry_phones.setdefault(phone, row.row_no)
            if ext is not None:
                seen_ext.setdefault(ext, row.row_no)
                if dry is not None:
                    dry.keys.setdefault("x:" + ext, row.row_no)
            kept.append(row)
        return kept

    async def _check_similar_names(
        self,
        rows: list[Candidate],
        companies: Mapping[str, uuid.UUID | None],
        result: ChunkResult,
        dry: DryState | None,
    ) -> list[Candidate]:
        """The API's third duplicate rule: a similar name at the same (existing) company.

        One query per chunk: each row's lower-cased "first last" against the live
        contacts of its company, by trigram similarity (``duplicate_name_similarity``).
        """
        probes: list[tuple[int, uuid.UUID, str]] = []
        for row in rows:
            name = " ".join(p for p in (row.data.first_name, row.data.last_name) if p).lower()
            if not name:
                continue
            company = self._company(row, companies, dry)
            if isinstance(company, RowError) or company[0] is None:
                continue
            probes.append((row.row_no, company[0], name))
        if not probes:
            return rows
        found: dict[int, uuid.UUID | None] = {
            row_no: (record_id if self.access.may_read(owner_id) else None)
            for row_no, record_id, owner_id in (
                await self.session.execute(
                    text(
                        "SELECT DISTINCT ON (u.row_no) u.row_no, c.id, c.owner_id"
                        " FROM unnest(CAST(:row_nos AS int[]), CAST(:company_ids AS uuid[]),"
                        " CAST(:names AS text[])) AS u(row_no, company_id, name)"
                        " JOIN contacts AS c ON c.company_id = u.company_id"
                        " AND c.deleted_at IS NULL"
                        " WHERE extensions.similarity("
                        "lower(concat_ws(' ', c.first_name, c.last_name)), u.name) >= :threshold"
                        " ORDER BY u.row_no, c.created_at, c.id"
                    ),
                    {
                        "row_nos": [p[0] for p in probes],
                        "company_ids": [p[1] for p in probes],
                        "names": [p[2] for p in probes],
                        "threshold": self.svc.ctx.duplicate_similarity,
                    },
                )
            ).all()
        }
        if not found:
            return rows
        column = self.column_of.get("last_name") or self.column_of.get("first_name")
        kept = []
        for row in rows:
            if row.row_no not in found:
                kept.append(row)
                continue
            name = " ".join(p for p in (row.data.first_name, row.data.last_name) if p)
            result.errors.append(
                RowError(
                    row.row_no,
                    column,
                    "a contact with a similar name at the same company already exists"
                    f"{_naming(found[row.row_no])} (set allow_duplicates to import it anyway)",
                    name[:200],
                )
            )
        return kept

    def _duplicate(
        self,
        row: Candidate,
        kind: str,
        value: str,
        known: Mapping[str, uuid.UUID | None],
        seen: Mapping[str, int],
        remembered: Mapping[str, int] | None,
    ) -> RowError | None:
        """Is this primary email/phone taken by a contact, or by an earlier row?"""
        if value in known:
            return RowError(
                row.row_no,
                self.column_of.get(kind),
                f"a contact with this {kind} already exists{_naming(known[value])} "
                "(set allow_duplicates to import it anyway)",
                value,
            )
        earlier = seen.get(value) or (remembered.get(value) if remembered else None)
        if earlier:
            return RowError(
                row.row_no,
                self.column_of.get(kind),
                f"repeats the {kind} of row {earlier} of this file "
                "(set allow_duplicates to import it anyway)",
                value,
            )
        return None

    def _owner(
        self, row: Candidate, owners: set[uuid.UUID], default: uuid.UUID | None
    ) -> uuid.UUID | RowError | None:
        if not row.owner_given:
            return default
        if row.owner_id is None or row.owner_id not in owners:
            return RowError(
                row.row_no,
                self.column_of.get("owner"),
                OWNER_RULE,
                row.owner_email or str(row.owner_id),
            )
        return row.owner_id

    def _company(
        self, row: Candidate, companies: Mapping[str, uuid.UUID | None], dry: DryState | None
    ) -> tuple[uuid.UUID | None, str | None] | RowError:
        if row.company_name is None:
            return row.data.company_id, None
        company_id = companies.get(row.company_name.lower())
        if company_id is None and (dry is None and self.options.create_companies):
            return RowError(
                row.row_no,
                self.column_of.get("company"),
                "the company could not be created",
                row.company_name,
            )
        if company_id is None and not self.options.create_companies:
            return RowError(
                row.row_no, self.column_of.get("company"), "no such company", row.company_name
            )
        return company_id, row.company_name

    async def _sensitive(
        self, record_id: uuid.UUID, clean: dict[str, Any], specs: Mapping[str, FieldSpec]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        custom, sensitive = {}, {}
        for key, value in clean.items():
            if value is None:
                continue
            if specs[key].sensitive:
                sensitive[key] = await self.svc.cipher.encrypt(
                    record_id, key, msgspec.json.encode(value).decode()
                )
            else:
                custom[key] = value
        return custom, sensitive

    async def _create_values(
        self,
        row: Candidate,
        specs: Mapping[str, FieldSpec],
        companies: Mapping[str, uuid.UUID | None],
        company_names: Mapping[uuid.UUID, str],
        owners: set[uuid.UUID],
        tag_ids: Mapping[str, uuid.UUID],
        dry: DryState | None,
    ) -> tuple[Any, ...] | RowError:
        """The row's COPY tuple (``CREATE_COLUMNS`` order)."""
        if row.ready is not None:
            return row.ready
        clean = row.clean if row.clean is not None else self._custom(row, specs, creating=True)
        if isinstance(clean, RowError):
            return clean
        owner_id = self._owner(row, owners, self.access.user_id)
        if isinstance(owner_id, RowError):
            return owner_id
        company = self._company(row, companies, dry)
        if isinstance(company, RowError):
            return company
        company_id, company_name = company
        search = row.search
        if company_id is not None and company_name is None:
            company_name = company_names.get(company_id)
            if company_name is None:
                return RowError(
                    row.row_no, self.column_of.get("company_id"), "no such company", None
                )
            search = None
        record_id = row.record_id or uuid.uuid4()
        custom: dict[str, Any] = {}
        sensitive: dict[str, Any] = {}
        if clean and dry is None:
            custom, sensitive = await self._sensitive(record_id, clean, specs)
        if search is None:
            search = self._search(row, company_name)
        encoded = row.encoded or self._encoded(row)
        data = row.data
        tags = [tag_ids[t.strip().lower()] for t in data.tags] if dry is None else []
        actor = self.access.actor
        return (
            record_id,
            data.first_name,
            data.last_name,
            row.email,
            row.phone,
            company_id,
            owner_id,
            data.lifecycle_stage,
            _json.encode(custom).decode() if custom else _EMPTY_JSON,
            encoded[0],
            encoded[1],
            data.title,
            encoded[2],
            data.source,
            encoded[3],
            data.external_id,
            tags,
            _json.encode(sensitive).decode() if sensitive else _EMPTY_JSON,
            actor,
            actor,
            search,
        )

    async def _update_values(
        self,
        row: Candidate,
        record: Contact,
        specs: Mapping[str, FieldSpec],
        companies: Mapping[str, uuid.UUID | None],
        company_names: Mapping[uuid.UUID, str],
        owners: set[uuid.UUID],
        tag_ids: Mapping[str, uuid.UUID],
        dry: DryState | None,
    ) -> dict[str, Any] | RowError:
        """The columns that change (empty cells leave a field alone); {} = unchanged."""
        data = row.data
        given = row.given
        new: dict[str, Any] = {}
        for name in ("first_name", "last_name", "title", "source", "external_id"):
            if name in given and getattr(data, name) != getattr(record, name):
                new[name] = getattr(data, name)
        if "lifecycle_stage" in given and data.lifecycle_stage != record.lifecycle_stage:
            new["lifecycle_stage"] = data.lifecycle_stage
        if row.emails and record.email != row.emails[0]["address"]:
            address = row.emails[0]["address"]
            new["emails"] = [{"address": address}] + [
                e for e in record.emails if e.get("address") != address
            ]
            new["email"] = address
        if row.phones and record.phone != row.phones[0]["number"]:
            number = row.phones[0]["number"]
            new["phones"] = [{"number": number}] + [
                p for p in record.phones if p.get("number") != number
            ]
            new["phone"] = number
        if "address" in given and data.address is not None:
            merged = {**record.address, **msgspec.to_builtins(data.address)}
            if merged != record.address:
                new["address"] = merged
        if "consent" in given and data.consent is not None:
            merged = {**record.consent, **msgspec.to_builtins(data.consent)}
            if merged != record.consent:
                new["consent"] = merged
        if data.tags and dry is None:
            current = list(record.tag_ids)
            wanted = current + [
                tag_ids[t.strip().lower()]
                for t in data.tags
                if tag_ids[t.strip().lower()] not in current
            ]
            wanted = list(dict.fromkeys(wanted))
            if wanted != current:
                new["tag_ids"] = wanted
        if row.owner_given:
            owner_id = self._owner(row, owners, record.owner_id)
            if isinstance(owner_id, RowError):
                return owner_id
            if owner_id != record.owner_id:
                new["owner_id"] = owner_id
        if row.company_name is not None or "company_id" in given:
            company = self._company(row, companies, dry)
            if isinstance(company, RowError):
                return company
            if (
                row.company_name is None
                and company[0] is not None
                and company[0] != record.company_id
                and company[0] not in company_names
            ):
                return RowError(
                    row.row_no, self.column_of.get("company_id"), "no such company", None
                )
            if company[0] != record.company_id:
                new["company_id"] = company[0]
        if row.custom:
            clean = self._custom(row, specs, creating=False)
            if isinstance(clean, RowError):
                return clean
            custom = dict(record.custom_fields)
            sensitive = dict(record.sensitive_fields)
            for key, value in clean.items():
                if value is None:
                    continue
                if specs[key].sensitive:
                    token = sensitive.get(key)
                    plain: Any = (
                        msgspec.json.decode(await self.svc.cipher.decrypt(record.id, key, token))
                        if token
                        else None
                    )
                    if plain != value and dry is None:
                        sensitive[key] = await self.svc.cipher.encrypt(
                            record.id, key, msgspec.json.encode(value).decode()
                        )
                    elif plain != value:
                        sensitive[key] = REDACTED
                elif custom.get(key) != value:
                    custom[key] = value
            if custom != record.custom_fields:
                new["custom_fields"] = custom
            if sensitive != record.sensitive_fields:
                new["sensitive_fields"] = sensitive
        if not new:
            return {}
        if dry is None:
            company_id = new.get("company_id", record.company_id)
            company_name = None
            if company_id is not None:
                company_name = await self.session.scalar(
                    select(Company.name).where(Company.id == company_id)
                )
            merged_values = {
                "first_name": new.get("first_name", record.first_name),
                "last_name": new.get("last_name", record.last_name),
                "emails": new.get("emails", record.emails),
                "phones": new.get("phones", record.phones),
                "external_id": new.get("external_id", record.external_id),
            }
            new["search_text"] = search_text(merged_values, company_name)
        return new

    @staticmethod
    def _before(record: Contact, values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: jsonable(getattr(record, k)) for k in values}

    # ------------------------------------------------------------------ writing
    async def _raw(self) -> Any:
        conn = await self.session.connection()
        raw = await conn.get_raw_connection()
        return raw.driver_connection

    @staticmethod
    def _record(values: Mapping[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
        return tuple(
            _json.encode(values[c]).decode() if c in JSON_COLUMNS else values[c] for c in columns
        )

    async def _write_creates(
        self,
        rows: list[tuple[Any, ...]],
        sources: list[Candidate],
        specs: Mapping[str, FieldSpec],
        result: ChunkResult,
    ) -> None:
        if not rows:
            return
        apg = await self._raw()
        await apg.copy_records_to_table("contacts", records=rows, columns=list(CREATE_COLUMNS))
        # The chunk's search words, split off in Python (mostly ahead, in ``prepare``) so
        # PostgreSQL only inserts the distinct ones; the rule is ``dictionary_words``'.
        runs: set[str] = set()
        for v, row in zip(rows, sources, strict=True):
            runs.update(row.runs if row.runs is not None else word_runs(v[_SEARCH]))
        words = dictionary_words(runs)
        if words:
            await apg.execute(_ADD_WORD_LIST_SQL, words)
        links = [(v[_ID], v[_COMPANY], True) for v in rows if v[_COMPANY] is not None]
        if links:
            await apg.copy_records_to_table(
                "contact_companies",
                records=links,
                columns=["contact_id", "company_id", "is_primary"],
            )
        actor = self.access.actor
        await apg.copy_records_to_table(
            "field_changes",
            records=[
                ("contact", v[_ID], "created", None, _CREATED_JSON, "import", actor) for v in rows
            ],
            columns=_HISTORY_COLUMNS,
        )
        result.created_ids = [v[_ID] for v in rows]
        if self.emit_record_events:
            for v in rows:
                fields = {
                    k: val
                    for k, val in self._tracked(self._values_of(v)).items()
                    if val not in (None, [], {}, "")
                }
                await self._announce(
                    "created",
                    v[_ID],
                    v[_OWNER],
                    1,
                    {"fields": {k: {"from": None, "to": val} for k, val in fields.items()}},
                )
        else:
            await self._announce_batch(
                [
                    row.announced or self._imported(v, row, specs)
                    for v, row in zip(rows, sources, strict=True)
                ]
            )

    @staticmethod
    def _values_of(record: tuple[Any, ...]) -> dict[str, Any]:
        """A create's COPY tuple back as column values (JSON columns decoded)."""
        return {
            c: msgspec.json.decode(v) if c in JSON_COLUMNS else v
            for c, v in zip(CREATE_COLUMNS, record, strict=True)
        }

    @staticmethod
    def _imported(
        record: tuple[Any, ...], row: Candidate, specs: Mapping[str, FieldSpec]
    ) -> msgspec.Raw:
        """One created contact of a ``contacts.contact.imported`` batch (JSON, encoded
        once): its id, owner, version and non-empty public fields (sensitive custom
        values as ``[sensitive]``)."""
        data = row.data
        fields: dict[str, Any] = {}
        for name, value in (
            ("first_name", data.first_name),
            ("last_name", data.last_name),
            ("emails", row.emails),
            ("phones", row.phones),
            ("title", data.title),
            ("company_id", record[_COMPANY]),
            ("address", data.address),
            ("source", data.source),
            ("lifecycle_stage", data.lifecycle_stage),
            ("owner_id", record[_OWNER]),
            ("consent", data.consent),
            ("external_id", data.external_id),
            ("tag_ids", record[_TAGS]),
        ):
            if value:
                fields[name] = value
        if isinstance(row.clean, dict):
            for key, value in row.clean.items():
                if value is not None:
                    spec = specs.get(key)
                    fields[f"custom_fields.{key}"] = (
                        REDACTED if spec is not None and spec.sensitive else value
                    )
        return batch_record(record[_ID], record[_OWNER], 1, "created", fields)

    async def _announce_batch(self, records: list[msgspec.Raw]) -> None:
        await announce_batch(
            self.session,
            "contacts.contact.imported",
            self.svc.tenant_id,
            self.job_id,
            self.access.actor,
            records,
        )

    @staticmethod
    def _tracked(values: Mapping[str, Any]) -> dict[str, Any]:
        snap = {name: jsonable(values[name]) for name in CONTACT.tracked if name in values}
        if "tag_ids" in values:
            snap["tag_ids"] = sorted(str(t) for t in values["tag_ids"])
        for key, value in (values.get("custom_fields") or {}).items():
            snap[f"custom_fields.{key}"] = value
        for key in values.get("sensitive_fields") or {}:
            snap[f"custom_fields.{key}"] = REDACTED
        return snap

    async def _announce(
        self,
        action: str,
        record_id: uuid.UUID,
        owner_id: uuid.UUID | None,
        version: int,
        data: dict[str, Any],
    ) -> None:
        await emit(
            self.session,
            f"contacts.contact.{action}",
            self.svc.tenant_id,
            {
                "contact_id": str(record_id),
                "owner_id": str(owner_id) if owner_id else None,
                "version": version,
                "import_id": str(self.job_id),
                **data,
            },
            actor=self.access.actor,
        )

    async def _write_updates(
        self,
        seq: int,
        changed: list[tuple[Contact, dict[str, Any], dict[str, Any]]],
        result: ChunkResult,
    ) -> None:
        if not changed:
            return
        apg = await self._raw()
        await apg.execute(
            "CREATE TEMP TABLE IF NOT EXISTS import_patch ("
            " id uuid PRIMARY KEY, expected int NOT NULL,"
            " first_name text, last_name text, email text, phone text, company_id uuid,"
            " owner_id uuid, lifecycle_stage text, custom_fields jsonb, emails jsonb,"
            " phones jsonb, title text, address jsonb, source text, consent jsonb,"
            " external_id text, tag_ids uuid[], sensitive_fields jsonb, search_text text"
            ") ON COMMIT DELETE ROWS"
        )
        records = []
        for record, values, _before in changed:
            full = {c: values.get(c, getattr(record, c)) for c in UPDATE_COLUMNS}
            records.append((record.id, record.version, *self._record(full, UPDATE_COLUMNS)))
        await apg.copy_records_to_table(
            "import_patch",
            records=records,
            columns=["id", "expected", *UPDATE_COLUMNS],
            schema_name="pg_temp",
        )
        assignments = ", ".join(f"{c} = p.{c}" for c in UPDATE_COLUMNS)
        # Rows were locked (FOR UPDATE) when matched: versions cannot have moved.
        updated = await apg.fetch(
            f"UPDATE contacts AS c SET {assignments}, version = c.version + 1,"
            " updated_at = now(), updated_by = $1"
            " FROM pg_temp.import_patch AS p WHERE c.id = p.id AND c.version = p.expected"
            " RETURNING c.id, c.version",
            self.access.actor,
        )
        versions = {r["id"]: r["version"] for r in updated}
        texts = [v["search_text"] for _r, v, _b in changed if v.get("search_text")]
        if texts:
            await apg.execute(ADD_WORDS_SQL, texts)
        history = []
        batched: list[msgspec.Raw] = []
        links: list[tuple[uuid.UUID, uuid.UUID | None]] = []
        for record, values, before in changed:
            version = versions[record.id]
            result.updates.append((record.id, before, version))
            old = self._tracked(before)
            new = self._tracked({**before, **jsonable(values)})
            changes = {
                k: {"from": old.get(k), "to": new.get(k)}
                for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)
            }
            for key, change in changes.items():
                history.append(
                    (
                        "contact",
                        record.id,
                        key[:100],
                        _json.encode(change["from"]).decode(),
                        _json.encode(change["to"]).decode(),
                        "import",
                        self.access.actor,
                    )
                )
            if "company_id" in values:
                links.append((record.id, values["company_id"]))
            if changes:
                owner = values.get("owner_id", record.owner_id)
                if self.emit_record_events:
                    await self._announce("updated", record.id, owner, version, {"changes": changes})
                else:
                    fields = {k: c["to"] for k, c in changes.items()}
                    batched.append(batch_record(record.id, owner, version, "updated", fields))
        if batched:
            await self._announce_batch(batched)
        if history:
            await apg.copy_records_to_table(
                "field_changes",
                records=history,
                columns=[
                    "entity",
                    "record_id",
                    "field",
                    "old_value",
                    "new_value",
                    "reason",
                    "actor",
                ],
            )
        for contact_id, company_id in links:
            await apg.execute(
                "UPDATE contact_companies SET is_primary = false"
                " WHERE contact_id = $1 AND is_primary",
                contact_id,
            )
            if company_id is not None:
                await apg.execute(
                    "INSERT INTO contact_companies (contact_id, company_id, is_primary)"
                    " VALUES ($1, $2, true) ON CONFLICT (contact_id, company_id)"
                    " DO UPDATE SET is_primary = true",
                    contact_id,
                    company_id,
                )
        await apg.executemany(
            "INSERT INTO import_updates (job_id, record_id, seq, before, version_after)"
            " VALUES ($1, $2, $3, $4, $5)",
            [
                (self.job_id, rid, seq, _json.encode(before).decode(), version)
                for rid, before, version in result.updates
            ],
        )
