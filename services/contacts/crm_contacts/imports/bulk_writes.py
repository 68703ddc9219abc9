"""A chunk's set-based writes: the creates as one ``COPY`` (with their search words,
primary company links and ``created`` history rows), the updates as one
``UPDATE … FROM`` a temporary table (with their history, links and before-images),
and the events of both, all in the chunk's transaction (SQL in ``repository``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from crm_contacts.fields.values import FieldSpec
from crm_contacts.imports.events import ImportAnnouncer, batch_record, imported_record, tracked
from crm_contacts.imports.repository import ImportRecordRepository
from crm_contacts.imports.rows import (
    COMPANY,
    CREATE_COLUMNS,
    ID,
    JSON_COLUMNS,
    OWNER,
    SEARCH,
    UPDATE_COLUMNS,
    Candidate,
    ChunkResult,
    json_encoder,
)
from crm_contacts.models import Contact
from crm_contacts.records.repository import dictionary_words, word_runs
from crm_contacts.records.service import jsonable

#: The history value of every import create, encoded once.
_CREATED_JSON = json_encoder.encode("import").decode()


def copy_record(values: Mapping[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
    """Column values as a COPY tuple (JSON columns encoded)."""
    return tuple(
        json_encoder.encode(values[c]).decode() if c in JSON_COLUMNS else values[c] for c in columns
    )


def values_of(record: tuple[Any, ...]) -> dict[str, Any]:
    """A create's COPY tuple back as column values (JSON columns decoded)."""
    return {
        c: msgspec.json.decode(v) if c in JSON_COLUMNS else v
        for c, v in zip(CREATE_COLUMNS, record, strict=True)
    }


class ChunkWriter:
    """Writes one validated chunk of an import job."""

    def __init__(
        self,
        repo: ImportRecordRepository,
        announcer: ImportAnnouncer,
        job_id: uuid.UUID,
        actor: str | None,
        *,
        emit_record_events: bool,
    ) -> None:
        self.repo = repo
        self.announce = announcer
        self.job_id = job_id
        self.actor = actor
        self.emit_record_events = emit_record_events

    async def creates(
        self,
        rows: list[tuple[Any, ...]],
        sources: list[Candidate],
        specs: Mapping[str, FieldSpec],
        result: ChunkResult,
    ) -> None:
        if not rows:
            return
        repo = self.repo
        await repo.copy_contacts(rows, list(CREATE_COLUMNS))
        # The chunk's search words, split off in Python (mostly ahead, in ``prepare``) so
        # PostgreSQL only inserts the distinct ones; the rule is ``dictionary_words``'.
        runs: set[str] = set()
        for v, row in zip(rows, sources, strict=True):
            runs.update(row.runs if row.runs is not None else word_runs(v[SEARCH]))
        words = dictionary_words(runs)
        if words:
            await repo.add_word_list(words)
        links = [(v[ID], v[COMPANY], True) for v in rows if v[COMPANY] is not None]
        if links:
            await repo.copy_primary_links(links)
        actor = self.actor
        await repo.copy_history(
            [("contact", v[ID], "created", None, _CREATED_JSON, "import", actor) for v in rows]
        )
        result.created_ids = [v[ID] for v in rows]
        if self.emit_record_events:
            for v in rows:
                fields = {
                    k: val
                    for k, val in tracked(values_of(v)).items()
                    if val not in (None, [], {}, "")
                }
                await self.announce.record(
                    "created",
                    v[ID],
                    v[OWNER],
                    1,
                    {"fields": {k: {"from": None, "to": val} for k, val in fields.items()}},
                )
        else:
            await self.announce.batch(
                [
                    row.announced or imported_record(v, row, specs)
                    for v, row in zip(rows, sources, strict=True)
                ]
            )

    async def updates(
        self,
        seq: int,
        changed: list[tuple[Contact, dict[str, Any], dict[str, Any]]],
        result: ChunkResult,
    ) -> None:
        if not changed:
            return
        repo = self.repo
        records = []
        for record, values, _before in changed:
            full = {c: values.get(c, getattr(record, c)) for c in UPDATE_COLUMNS}
            records.append((record.id, record.version, *copy_record(full, UPDATE_COLUMNS)))
        versions = await repo.patch_contacts(records, UPDATE_COLUMNS, self.actor)
        texts = [v["search_text"] for _r, v, _b in changed if v.get("search_text")]
        if texts:
            await repo.add_words(texts)
        history = []
        batched: list[msgspec.Raw] = []
        links: list[tuple[uuid.UUID, uuid.UUID | None]] = []
        for record, values, before in changed:
            version = versions[record.id]
            result.updates.append((record.id, before, version))
            old = tracked(before)
            new = tracked({**before, **jsonable(values)})
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
                        json_encoder.encode(change["from"]).decode(),
                        json_encoder.encode(change["to"]).decode(),
                        "import",
                        self.actor,
                    )
                )
            if "company_id" in values:
                links.append((record.id, values["company_id"]))
            if changes:
                owner = values.get("owner_id", record.owner_id)
                if self.emit_record_events:
                    await self.announce.record(
                        "updated", record.id, owner, version, {"changes": changes}
                    )
                else:
                    fields = {k: c["to"] for k, c in changes.items()}
                    batched.append(batch_record(record.id, owner, version, "updated", fields))
        if batched:
            await self.announce.batch(batched)
        if history:
            await repo.copy_history(history)
        for contact_id, company_id in links:
            await repo.set_primary_company(contact_id, company_id)
        await repo.add_before_images(
            [
                (self.job_id, rid, seq, json_encoder.encode(before).decode(), version)
                for rid, before, version in result.updates
            ]
        )
