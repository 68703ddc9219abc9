"""The import of one chunk: rows mapped and validated (``mapping``), checked against
the tenant's data (``rules``), turned into creates and updates, and written set-based
(``bulk_writes``, whose SQL is in ``repository``) with their events (``events``).
Everything happens in the caller's transaction, which also advances the job's
checkpoint, so a chunk is either entirely written or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.companies.schemas import CompanyCreate
from crm_contacts.companies.service import CompanyService
from crm_contacts.contacts.service import ContactService, search_text
from crm_contacts.fields.values import FieldSpec
from crm_contacts.imports.bulk_writes import ChunkWriter
from crm_contacts.imports.events import ImportAnnouncer
from crm_contacts.imports.mapping import RowMapper
from crm_contacts.imports.repository import ImportRecordRepository
from crm_contacts.imports.rows import (
    EMPTY_JSON,
    Candidate,
    ChunkResult,
    DryState,
    Options,
    Prepared,
    RowError,
    json_encoder,
)
from crm_contacts.imports.rules import ImportRules
from crm_contacts.models import Contact
from crm_contacts.records.service import REDACTED, jsonable
from crm_lib.http import ProblemError


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
        self.access = access = svc.access
        self.job_id = job_id
        self.options = options
        self.repo = repo = ImportRecordRepository(session)
        self.mapper = mapper = RowMapper(
            access, columns, mapping, options, emit_record_events=emit_record_events
        )
        self.rules = ImportRules(
            repo, access, options, mapper.column_of, job_id, svc.ctx.duplicate_similarity
        )
        self.writer = ChunkWriter(
            repo,
            ImportAnnouncer(session, svc.tenant_id, job_id, access.actor),
            job_id,
            access.actor,
            emit_record_events=emit_record_events,
        )

    def build(
        self, row_no: int, cells: list[str], specs: Mapping[str, FieldSpec]
    ) -> Candidate | RowError:
        """The row as the API's create shape, validated by the API's rules."""
        return self.mapper.build(row_no, cells, specs)

    def prepare(
        self,
        rows: list[tuple[int, list[str]]],
        specs: Mapping[str, FieldSpec],
        pause: Callable[[], None] | None = None,
    ) -> Prepared:
        """Parse and validate a chunk without the database (``RowMapper.prepare``)."""
        return self.mapper.prepare(rows, specs, pause)

    # ------------------------------------------------------------------ lookups
    async def _companies(self, names: set[str], dry_run: bool) -> dict[str, uuid.UUID | None]:
        if not names:
            return {}
        lowered = {n.lower(): n for n in names}
        rows = await self.repo.companies_named(list(lowered), self.access.readable_owners)
        found: dict[str, uuid.UUID | None] = {}
        for name, company_id in rows:
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
        by_email = await self.repo.members_by_email(
            sorted({r.owner_email for r in rows if r.owner_email})
        )
        for row in rows:
            row.owner_id = by_email.get(row.owner_email or "")

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
            candidates, matches = await self.rules.match(candidates, result, dry)

        creates = [r for r in candidates if r.row_no not in matches]
        updates = [r for r in candidates if r.row_no in matches]

        # Creates: same rules as POST /contacts (needs a name/email/phone, no duplicate).
        creates = await self.rules.check_creates(creates, result, dry)

        # Companies and owners (shared lookups).
        names = {r.company_name for r in creates + updates if r.company_name}
        companies = await self._companies(names, dry is not None)
        if not self.options.allow_duplicates:
            creates = await self.rules.check_similar_names(creates, companies, result, dry)
        await self._owners_by_email([r for r in candidates if r.owner_email])
        owners = await self.repo.active_members({r.owner_id for r in candidates if r.owner_id})
        tag_names = {t for r in creates + updates for t in r.data.tags}
        tag_ids: dict[str, uuid.UUID] = {}
        if tag_names and dry is None:
            ordered = sorted(tag_names, key=str.lower)
            for name, tag_id in zip(ordered, await self.svc.tags.resolve(ordered), strict=True):
                tag_ids[name.strip().lower()] = tag_id

        # Companies named by id (creates and updates): live ones the importer sees.
        by_id = await self.repo.company_names(
            {
                r.data.company_id
                for r in creates + updates
                if r.company_name is None and r.data.company_id
            },
            self.access.readable_owners,
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
            await self.writer.creates(new_rows, sources, specs, result)
            await self.writer.updates(seq, changed, result)
        return result

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
        clean = (
            row.clean if row.clean is not None else self.mapper.custom(row, specs, creating=True)
        )
        if isinstance(clean, RowError):
            return clean
        owner_id = self.rules.owner(row, owners, self.access.user_id)
        if isinstance(owner_id, RowError):
            return owner_id
        company = self.rules.company(row, companies, dry)
        if isinstance(company, RowError):
            return company
        company_id, company_name = company
        search = row.search
        if company_id is not None and company_name is None:
            company_name = company_names.get(company_id)
            if company_name is None:
                return RowError(
                    row.row_no, self.mapper.column_of.get("company_id"), "no such company", None
                )
            search = None
        record_id = row.record_id or uuid.uuid4()
        custom: dict[str, Any] = {}
        sensitive: dict[str, Any] = {}
        if clean and dry is None:
            custom, sensitive = await self._sensitive(record_id, clean, specs)
        if search is None:
            search = self.mapper.search(row, company_name)
        encoded = row.encoded or self.mapper.encoded(row)
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
            json_encoder.encode(custom).decode() if custom else EMPTY_JSON,
            encoded[0],
            encoded[1],
            data.title,
            encoded[2],
            data.source,
            encoded[3],
            data.external_id,
            tags,
            json_encoder.encode(sensitive).decode() if sensitive else EMPTY_JSON,
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
            owner_id = self.rules.owner(row, owners, record.owner_id)
            if isinstance(owner_id, RowError):
                return owner_id
            if owner_id != record.owner_id:
                new["owner_id"] = owner_id
        if row.company_name is not None or "company_id" in given:
            company = self.rules.company(row, companies, dry)
            if isinstance(company, RowError):
                return company
            if (
                row.company_name is None
                and company[0] is not None
                and company[0] != record.company_id
                and company[0] not in company_names
            ):
                return RowError(
                    row.row_no, self.mapper.column_of.get("company_id"), "no such company", None
                )
            if company[0] != record.company_id:
                new["company_id"] = company[0]
        if row.custom:
            clean = self.mapper.custom(row, specs, creating=False)
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
                company_name = await self.repo.company_name(company_id)
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
