"""Mapping a CSV row onto the API's create shape, without the database.

The mapping (column -> target) is compiled once per chunk into one handler per mapped
column; each row becomes the API's ``ContactCreate`` (validated by msgspec with the
very same types) and is normalised like ``ContactService`` (emails lower-cased, phone
digits, custom fields through ``fields.values.validate_values``, search text). For
rows that may be created, ``prepare`` also draws their ids, encodes their JSON columns
and, when no lookup can change it, builds the whole COPY tuple: pure CPU, so the job
runner prepares the next chunk in a worker thread.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec

from crm_contacts.access import Access
from crm_contacts.contacts.schemas import ContactCreate
from crm_contacts.contacts.service import phone_digits, search_text
from crm_contacts.fields.values import FieldErrors, FieldSpec, validate_values
from crm_contacts.imports.csvfile import TOO_LARGE
from crm_contacts.imports.events import imported_record
from crm_contacts.imports.rows import (
    EMPTY_JSON,
    Candidate,
    Options,
    Prepared,
    RowError,
    json_encoder,
)
from crm_contacts.records.repository import word_runs
from crm_contacts.records.service import unreadable_fields

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
OWNER_RULE = "must be the id or login email of an active user of this tenant"
_PATH = re.compile(r"at `\$\.([a-z_]+)(?:\[\d+\])?(?:\.([a-z_]+))?")
_STAGE_SEP = re.compile(r"[\s\-]+")
#: Plain text targets (the trimmed cell is the value).
_PLAIN = frozenset({"first_name", "last_name", "title", "source", "external_id"})
_TRUE = frozenset({"true", "yes", "y", "1", "x"})
_FALSE = frozenset({"false", "no", "n", "0", ""})


class Extra:
    """Per-row values a mapped cell contributes besides the API payload."""

    __slots__ = ("company", "custom", "owner")

    def __init__(self) -> None:
        self.company: str | None = None
        self.owner: str | None = None
        self.custom: dict[str, Any] = {}


#: A compiled mapping target: (cell value, payload, extra) -> an error message or None.
Handler = Callable[[str, dict[str, Any], Extra], str | None]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
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


def new_ids(count: int) -> list[uuid.UUID]:
    """``count`` random (version 4) UUIDs from one read of the OS random source."""
    raw = os.urandom(16 * count)
    return [uuid.UUID(bytes=raw[i : i + 16], version=4) for i in range(0, 16 * count, 16)]


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


class RowMapper:
    """One import job's mapping, applied to rows without the database."""

    def __init__(
        self,
        access: Access,
        columns: list[str],
        mapping: Mapping[str, str | None],
        options: Options,
        *,
        emit_record_events: bool,
    ) -> None:
        self.access = access
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
        self.may_reassign = access.may_reassign()

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

            def plain(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                payload[target] = value
                return None

            return plain
        if target == "lifecycle_stage":
            stages: dict[str, str] = {}

            def stage(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                normal = stages.get(value)
                if normal is None:
                    normal = _STAGE_SEP.sub("_", value.lower())
                    if len(stages) < 1000:  # a file has a handful of distinct stages
                        stages[value] = normal
                payload["lifecycle_stage"] = normal
                return None

            return stage
        if target == "email":

            def email(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                payload["emails"] = [{"address": value}]
                return None

            return email
        if target == "phone":

            def phone(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                payload["phones"] = [{"number": value}]
                return None

            return phone
        if target == "tags":

            def tags(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                payload["tags"] = [t.strip() for t in value.split(separator) if t.strip()]
                return None

            return tags
        if target == "company":

            def company(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                extra.company = value[:300]
                return None

            return company
        if target == "company_id":

            def company_id(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                payload["company_id"] = value
                return None

            return company_id
        if target == "owner":

            def owner(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                extra.owner = value
                return None

            return owner
        if target.startswith("address."):
            part = target.split(".", 1)[1]
            upper = part == "country"

            def address(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                payload.setdefault("address", {})[part] = value.upper() if upper else value
                return None

            return address
        if target.startswith("consent."):
            purpose = target.split(".", 1)[1]

            def consent(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                try:
                    payload.setdefault("consent", {})[purpose] = _bool(value)
                except ValueError as exc:
                    return str(exc)
                return None

            return consent
        if target.startswith("cf."):
            key = target[3:]
            spec = specs.get(key)

            def custom(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
                extra.custom[key] = custom_cell(spec, value, separator) if spec else value
                return None

            return custom

        def ignored(value: str, payload: dict[str, Any], extra: Extra) -> str | None:
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
        extra = Extra()
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
        with gc_paused():
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
            ids = new_ids(len(candidates))
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
        row.clean = clean = self.custom(row, specs, creating=True)
        row.encoded = encoded = self.encoded(row)
        if row.company_name is None and data.company_id is None:
            row.search = self.search(row, None)
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
                    EMPTY_JSON,
                    encoded[0],
                    encoded[1],
                    data.title,
                    encoded[2],
                    data.source,
                    encoded[3],
                    data.external_id,
                    [],
                    EMPTY_JSON,
                    actor,
                    actor,
                    row.search,
                )
                row.ready = record
                if not self.emit_record_events:
                    row.announced = imported_record(record, row, specs)
        elif row.company_name is not None:
            row.search = self.search(row, row.company_name)
        if row.search is not None:
            row.runs = word_runs(row.search)

    @staticmethod
    def encoded(row: Candidate) -> tuple[str, str, str, str]:
        data = row.data
        return (
            json_encoder.encode(row.emails).decode(),
            json_encoder.encode(row.phones).decode(),
            json_encoder.encode(data.address).decode() if data.address is not None else EMPTY_JSON,
            json_encoder.encode(data.consent).decode() if data.consent is not None else EMPTY_JSON,
        )

    @staticmethod
    def search(row: Candidate, company_name: str | None) -> str:
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

    def custom(
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
