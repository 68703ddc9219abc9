"""CSV files in and out: encoding detection, tolerant parsing, formula-safe writing.

Uploads are decoded once (UTF-8 with or without BOM, UTF-16 with a BOM, else
Windows-1252, else Latin-1), parsed with the standard ``csv`` module in strict
mode (an unbalanced quote rejects the file, naming the line where the broken
field starts) and cut into fixed-size chunks of ``[row number, cells]``. Ragged
rows and oversized fields are not file errors: the import reports them per row.
Every CSV this service emits goes through ``safe_cell``
(``crm_contacts.jobs.csv_output``, re-exported here) so that a cell starting
with ``= + - @``, a tab or a carriage return is never run as a formula.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec

from crm_contacts.jobs.csv_output import safe_cell as safe_cell
from crm_contacts.jobs.csv_output import write_csv as write_csv
from crm_lib.http import ProblemError

#: A parsed field longer than this is replaced by a row error (no crash, no huge rows).
MAX_FIELD_CHARS = 32_768
MAX_COLUMNS = 500

_packer = msgspec.msgpack.Encoder()
_unpacker = msgspec.msgpack.Decoder(list[tuple[int, list[str]]])

csv.field_size_limit(sys.maxsize)


def decode(raw: bytes) -> tuple[str, str]:
    """(text, encoding name) of an upload."""
    if raw.startswith(codecs.BOM_UTF8):
        return raw[len(codecs.BOM_UTF8) :].decode("utf-8", errors="strict"), "utf-8-sig"
    for bom, name in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if raw.startswith(bom):
            try:
                return raw[len(bom) :].decode(name), "utf-16"
            except UnicodeDecodeError as exc:
                raise ProblemError(
                    422, f"The file has a UTF-16 byte order mark but is not valid UTF-16: {exc}."
                ) from exc
    if b"\x00" in raw[:4096] and raw.count(b"\x00") > len(raw) // 4:
        raise ProblemError(
            422,
            "The file looks like UTF-16 without a byte order mark; save it as UTF-8.",
            title="Unsupported encoding",
        )
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


@dataclass
class ParsedFile:
    encoding: str
    delimiter: str
    columns: list[str]
    total_rows: int
    chunks: list[bytes] = field(default_factory=list)
    chunk_first_rows: list[int] = field(default_factory=list)
    chunk_sizes: list[int] = field(default_factory=list)
    sample: list[list[str]] = field(default_factory=list)


def _columns(header: list[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(header):
        clean = name.strip().lstrip("\ufeff")[:200] or f"column_{i + 1}"
        base, n = clean, 2
        while clean.lower() in seen:
            clean, n = f"{base}_{n}", n + 1
        seen.add(clean.lower())
        out.append(clean)
    return out


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) of every non-blank record; 422 on an unbalanced quote."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ProblemError(
                422,
                f"The file is not valid CSV: {exc} (the record starting on line {start}; "
                "probably an unbalanced quote).",
                title="Malformed CSV",
            ) from exc
        line = start
        start = reader.line_num + 1
        if cells and any(c.strip() for c in cells):
            yield line, cells


def parse(raw: bytes, chunk_rows: int) -> ParsedFile:
    """Decode and parse an upload into chunks of ``[row number, cells]``.

    Row numbers count data rows from 1 (the header is row 0), as spreadsheets show
    them minus one; error reports also give the file line.
    """
    text, encoding = decode(raw)
    first_line = text.split("\n", 1)[0]
    delimiter = sniff_delimiter(first_line)
    records = _records(text, delimiter)
    try:
        _line, header = next(records)
    except StopIteration:
        raise ProblemError(422, "The file is empty: it needs a header row.") from None
    if len(header) > MAX_COLUMNS:
        raise ProblemError(422, f"The file has {len(header)} columns; at most {MAX_COLUMNS}.")
    parsed = ParsedFile(encoding, delimiter, _columns(header), 0)
    batch: list[tuple[int, list[str]]] = []
    row_no = 0

    def flush() -> None:
        parsed.chunks.append(_packer.encode(batch))
        parsed.chunk_first_rows.append(batch[0][0])
        parsed.chunk_sizes.append(len(batch))
        batch.clear()

    for _line, cells in records:
        row_no += 1
        if len(parsed.sample) < 5:
            parsed.sample.append([c[:200] for c in cells])
        if any(len(c) > MAX_FIELD_CHARS for c in cells):
            # Keep the row (it becomes a row error) without holding the huge field.
            cells = [c if len(c) <= MAX_FIELD_CHARS else "\x00TOO_LARGE" for c in cells]
        batch.append((row_no, cells))
        if len(batch) >= chunk_rows:
            flush()
    if batch:
        flush()
    parsed.total_rows = row_no
    return parsed


def unpack(data: bytes) -> list[tuple[int, list[str]]]:
    return _unpacker.decode(data)


TOO_LARGE = "\x00TOO_LARGE"

_WORD = re.compile(r"[^a-z0-9]+")

#: Header spellings (normalised) → standard import targets.
SYNONYMS: dict[str, str] = {}
for _target, _names in {
    "first_name": ("first name", "firstname", "given name", "forename", "first"),
    "last_name": ("last name", "lastname", "surname", "family name", "last"),
    "email": ("email", "e mail", "email address", "mail", "primary email"),
    "phone": ("phone", "telephone", "phone number", "mobile", "tel", "cell"),
    "title": ("title", "job title", "position", "role"),
    "company": ("company", "company name", "organisation", "organization", "account"),
    "lifecycle_stage": ("lifecycle stage", "lifecycle", "stage"),
    "owner": ("owner", "owner id", "owner_id", "contact owner"),
    "tags": ("tags", "labels", "tag"),
    "source": ("source", "lead source", "channel"),
    "external_id": ("external id", "external_id", "id", "record id", "crm id"),
    "address.street": ("street", "address", "street address", "address line 1"),
    "address.city": ("city", "town"),
    "address.region": ("region", "state", "province", "county"),
    "address.postal_code": ("postal code", "zip", "zip code", "postcode"),
    "address.country": ("country", "country code"),
}.items():
    for _name in _names:
        SYNONYMS[_WORD.sub(" ", _name).strip()] = _target


def suggest_mapping(columns: list[str], custom: dict[str, str]) -> dict[str, str | None]:
    """A guess for each column: a standard target, ``cf.<key>`` or None (skip).

    ``custom`` maps normalised custom field keys and labels to their keys.
    """
    out: dict[str, str | None] = {}
    used: set[str] = set()
    for column in columns:
        norm = _WORD.sub(" ", column.lower()).strip()
        target = SYNONYMS.get(norm)
        if target is None:
            key = custom.get(norm) or custom.get(norm.replace(" ", "_"))
            if norm.startswith("cf "):
                key = custom.get(norm[3:]) or custom.get(norm[3:].replace(" ", "_"))
            target = f"cf.{key}" if key else None
        if target is not None and target in used:
            target = None
        if target is not None:
            used.add(target)
        out[column] = target
    return out


def normalise_label(text: str) -> str:
    return _WORD.sub(" ", text.lower()).strip()
