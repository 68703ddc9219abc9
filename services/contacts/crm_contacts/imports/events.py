"""The events an import (or its revert) publishes: one event per record for small files
(``contacts.contact.created``/``updated``/``deleted`` with ``import_id``), batched
records for big ones (``contacts.contact.imported`` / ``import_reverted``), all in the
chunk's transaction (outbox)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.contacts.service import CONTACT
from crm_contacts.fields.values import FieldSpec
from crm_contacts.imports.rows import COMPANY, ID, OWNER, TAGS, Candidate, json_encoder
from crm_contacts.records.service import REDACTED, jsonable
from crm_lib.events import emit

#: Batched record events of big imports: at most this many records, or about this many
#: bytes, per event (NATS refuses messages over 1 MB).
EVENT_BATCH_RECORDS = 500
EVENT_BATCH_BYTES = 512 * 1024


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
    return msgspec.Raw(json_encoder.encode(record))


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


def imported_record(
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
        ("company_id", record[COMPANY]),
        ("address", data.address),
        ("source", data.source),
        ("lifecycle_stage", data.lifecycle_stage),
        ("owner_id", record[OWNER]),
        ("consent", data.consent),
        ("external_id", data.external_id),
        ("tag_ids", record[TAGS]),
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
    return batch_record(record[ID], record[OWNER], 1, "created", fields)


def tracked(values: Mapping[str, Any]) -> dict[str, Any]:
    """The tracked fields of a contact's column values, as history and events show them."""
    snap = {name: jsonable(values[name]) for name in CONTACT.tracked if name in values}
    if "tag_ids" in values:
        snap["tag_ids"] = sorted(str(t) for t in values["tag_ids"])
    for key, value in (values.get("custom_fields") or {}).items():
        snap[f"custom_fields.{key}"] = value
    for key in values.get("sensitive_fields") or {}:
        snap[f"custom_fields.{key}"] = REDACTED
    return snap


class ImportAnnouncer:
    """The events of one import job's chunk, in the chunk's transaction."""

    def __init__(
        self,
        session: AsyncSession,
        tenant_id: uuid.UUID | str,
        job_id: uuid.UUID,
        actor: str | None,
    ) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.job_id = job_id
        self.actor = actor

    async def record(
        self,
        action: str,
        record_id: uuid.UUID,
        owner_id: uuid.UUID | None,
        version: int,
        data: dict[str, Any],
    ) -> None:
        """One ``contacts.contact.<action>`` event (small imports)."""
        await emit(
            self.session,
            f"contacts.contact.{action}",
            self.tenant_id,
            {
                "contact_id": str(record_id),
                "owner_id": str(owner_id) if owner_id else None,
                "version": version,
                "import_id": str(self.job_id),
                **data,
            },
            actor=self.actor,
        )

    async def batch(self, records: list[msgspec.Raw]) -> None:
        """``contacts.contact.imported`` events (big imports)."""
        await announce_batch(
            self.session,
            "contacts.contact.imported",
            self.tenant_id,
            self.job_id,
            self.actor,
            records,
        )
