"""Logged activities and the timeline of a contact or company.

An activity is readable when the caller sees at least one record it is attached
to (``crm_contacts.access``); logging, editing and deleting need every attached
record to be visible and writable. Only activities logged here (``source =
'contacts'``) change; entries projected from other services are read-only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.access import forbidden
from crm_contacts.activities import schemas
from crm_contacts.activities.repository import ActivityRepository
from crm_contacts.companies.service import CompanyService
from crm_contacts.contacts.service import ContactService
from crm_contacts.models import Activity
from crm_contacts.records.service import RecordContext, RecordService, jsonable
from crm_lib.events import emit
from crm_lib.http import ProblemError, require_version
from crm_lib.pagination import Page, decode_cursor, encode_cursor

LOGGED_SOURCE = "contacts"
VIEW_FIELDS = (
    "id",
    "source",
    "kind",
    "contact_id",
    "company_id",
    "subject",
    "body",
    "details",
    "occurred_at",
    "source_event_id",
    "created_by",
    "created_at",
    "updated_at",
    "version",
)


def activity_view(row: Activity) -> dict[str, Any]:
    return {name: jsonable(getattr(row, name)) for name in VIEW_FIELDS}


class ActivityService:
    def __init__(self, session: AsyncSession, ctx: RecordContext) -> None:
        self.session = session
        self.access = ctx.access
        self.repo = ActivityRepository(session)
        self.contacts = ContactService(session, ctx)
        self.companies = CompanyService(session, ctx)

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.access.principal.tenant_id

    def _records(self, row: Activity | schemas.ActivityCreate) -> list[tuple[RecordService, Any]]:
        out: list[tuple[RecordService, Any]] = []
        if row.contact_id is not None:
            out.append((self.contacts, row.contact_id))
        if row.company_id is not None:
            out.append((self.companies, row.company_id))
        return out

    async def _require_writable_records(self, row: Activity | schemas.ActivityCreate) -> None:
        """Every attached record visible (else 404) and changeable (else 403)."""
        self.access.require_write()
        for svc, record_id in self._records(row):
            record = await svc.visible(record_id)
            if not self.access.may_write(record.owner_id):
                raise forbidden(f"You can see this {svc.entity.name} but not change it.")

    async def _may_read(self, row: Activity) -> bool:
        for svc, record_id in self._records(row):
            try:
                await svc.visible(record_id)
            except ProblemError:
                continue
            return True
        return False

    async def visible(self, activity_id: uuid.UUID, *, lock: bool = False) -> Activity:
        row = await self.repo.get(activity_id, lock=lock)
        if row is None or not await self._may_read(row):
            raise ProblemError(404, "No such activity.")
        return row

    async def _editable(self, activity_id: uuid.UUID, if_match: int | None) -> Activity:
        self.access.require_write()
        row = await self.visible(activity_id, lock=True)
        if row.source != LOGGED_SOURCE:
            raise ProblemError(
                409,
                f"Activities from {row.source} are read-only here.",
                title="Conflict",
            )
        await self._require_writable_records(row)
        require_version(if_match, row.version, "activity")
        return row

    async def _announce(
        self, action: str, row: Activity, extra: dict[str, Any] | None = None
    ) -> None:
        await emit(
            self.session,
            f"contacts.activity.{action}",
            self.tenant_id,
            {
                "activity_id": str(row.id),
                "kind": row.kind,
                "contact_id": str(row.contact_id) if row.contact_id else None,
                "company_id": str(row.company_id) if row.company_id else None,
                "occurred_at": row.occurred_at.isoformat(),
                "version": row.version,
                **(extra or {}),
            },
            actor=self.access.actor,
        )

    # ------------------------------------------------------------------ API
    async def log(self, data: schemas.ActivityCreate) -> Activity:
        if data.contact_id is None and data.company_id is None:
            raise ProblemError(
                422,
                "An activity needs a contact_id or a company_id.",
                title="Validation failed",
                errors=[{"field": "contact_id", "message": "contact_id or company_id required"}],
            )
        await self._require_writable_records(data)
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "source": LOGGED_SOURCE,
            "kind": data.kind,
            "contact_id": data.contact_id,
            "company_id": data.company_id,
            "subject": data.subject,
            "body": data.body,
            "details": jsonable(data.details),
            "created_by": self.access.actor,
        }
        if data.occurred_at is not None:
            values["occurred_at"] = _aware(data.occurred_at)
        row = await self.repo.insert(values)
        await self._announce("logged", row)
        return row

    async def update(
        self, activity_id: uuid.UUID, data: schemas.ActivityUpdate, if_match: int | None
    ) -> Activity:
        row = await self._editable(activity_id, if_match)
        given = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        if "occurred_at" in given:
            given["occurred_at"] = _aware(given["occurred_at"])
        if "details" in given:
            given["details"] = jsonable(given["details"])
        changed = sorted(k for k, v in given.items() if getattr(row, k) != v)
        if not changed:
            return row
        updated = await self.repo.update(row.id, {k: given[k] for k in changed})
        await self._announce("updated", updated, {"changed_fields": changed})
        return updated

    async def delete(self, activity_id: uuid.UUID, if_match: int | None) -> None:
        row = await self._editable(activity_id, if_match)
        await self.repo.delete(row.id)
        await self._announce("deleted", row)

    async def timeline(
        self,
        entity: str,
        record_id: uuid.UUID,
        cursor: str | None,
        limit: int,
        *,
        include_contacts: bool = False,
    ) -> Page[dict[str, Any]]:
        svc: RecordService = self.contacts if entity == "contact" else self.companies
        await svc.visible(record_id)
        after = decode_cursor(cursor, datetime, uuid.UUID) if cursor else None
        key = {"contact_id": record_id} if entity == "contact" else {"company_id": record_id}
        rows = await self.repo.timeline(
            **key,
            # A company's roll-up covers its linked contacts the caller may see.
            linked_contacts_of=(
                (record_id, self.contacts.visibility_filter())
                if entity == "company" and include_contacts
                else None
            ),
            after=(after[0], after[1]) if after else None,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = encode_cursor(last.occurred_at.isoformat(), str(last.id))
        return Page([activity_view(r) for r in rows], next_cursor)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ProblemError(
            422,
            "occurred_at needs a time zone (e.g. 2025-01-31T09:00:00Z).",
            title="Validation failed",
            errors=[{"field": "occurred_at", "message": "needs a time zone"}],
        )
    return value
