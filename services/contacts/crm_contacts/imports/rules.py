"""The validation rules of an import chunk that need the tenant's data: matching rows
to existing records (update/upsert), the API's duplicate rules for creates (an existing
or repeated email, phone or external id; a similar name at the same company), owners
and companies. Each rule refuses a row with a ``RowError`` naming the column and the
record (if the importer sees it) or the earlier row."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from crm_contacts.access import Access
from crm_contacts.imports.mapping import OWNER_RULE
from crm_contacts.imports.repository import ImportRecordRepository
from crm_contacts.imports.rows import Candidate, ChunkResult, DryState, Options, RowError, Taken
from crm_contacts.models import Contact


def naming(record_id: uuid.UUID | None) -> str:
    """How a row error names an existing contact: by id if the importer sees it."""
    return f": {record_id}" if record_id is not None else " (one you cannot see)"


class ImportRules:
    """The rules of one import job's chunks, for one caller."""

    def __init__(
        self,
        repo: ImportRecordRepository,
        access: Access,
        options: Options,
        column_of: Mapping[str, str],
        job_id: uuid.UUID,
        similarity: float,
    ) -> None:
        self.repo = repo
        self.access = access
        self.options = options
        self.column_of = column_of
        self.job_id = job_id
        self.similarity = similarity

    async def match(
        self, candidates: list[Candidate], result: ChunkResult, dry: DryState | None
    ) -> tuple[list[Candidate], dict[int, Contact]]:
        """Update/upsert: the rows that may go ahead, and the existing record each
        matching one updates (by row number); refused rows become row errors."""
        options = self.options
        matches: dict[int, Contact] = {}
        key = options.match_on or "email"
        keyed: dict[str, Candidate] = {}
        kept = []
        for row in candidates:
            value = self.key_of(row, key)
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
        existing = await self.repo.existing_by(key, list(keyed))
        repeated = await self.repo.touched_by(
            self.job_id, [r.id for rs in existing.values() for r in rs]
        )
        kept = []
        for row in candidates:
            value = self.key_of(row, key)
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
        return kept, matches

    @staticmethod
    def key_of(row: Candidate, key: str) -> str | None:
        if key == "email":
            return row.emails[0]["address"] if row.emails else None
        return row.data.external_id

    async def taken(
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
        rows = await self.repo.holders(emails, phones, externals)
        by_email, by_phone, by_external = found
        for email, phone, external_id, found_id, owner_id in rows:
            # A record the importer cannot see is reported without its id.
            record_id = found_id if self.access.may_read(owner_id) else None
            if email in emails:
                by_email.setdefault(email, record_id)
            if phone in phones:
                by_phone.setdefault(phone, record_id)
            if external_id in externals:
                by_external.setdefault(external_id, record_id)
        return found

    async def check_creates(
        self, rows: list[Candidate], result: ChunkResult, dry: DryState | None
    ) -> list[Candidate]:
        emails, phones, externals = await self.taken(
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
                        "a contact with this external_id already exists" + naming(externals[ext]),
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
                    problem = self.duplicate(row, "email", email, emails, seen_email, dry_emails)
                if problem is None and phone is not None:
                    problem = self.duplicate(row, "phone", phone, phones, seen_phone, dry_phones)
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

    async def check_similar_names(
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
            company = self.company(row, companies, dry)
            if isinstance(company, RowError) or company[0] is None:
                continue
            probes.append((row.row_no, company[0], name))
        if not probes:
            return rows
        found: dict[int, uuid.UUID | None] = {
            row_no: (record_id if self.access.may_read(owner_id) else None)
            for row_no, record_id, owner_id in await self.repo.similar_names(
                [p[0] for p in probes],
                [p[1] for p in probes],
                [p[2] for p in probes],
                self.similarity,
            )
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
                    f"{naming(found[row.row_no])} (set allow_duplicates to import it anyway)",
                    name[:200],
                )
            )
        return kept

    def duplicate(
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
                f"a contact with this {kind} already exists{naming(known[value])} "
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

    def owner(
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

    def company(
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
