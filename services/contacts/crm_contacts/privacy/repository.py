"""Queries of GDPR requests, receipts, and of everything contacts holds about one person."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import (
    Activity,
    Company,
    Contact,
    ContactCompany,
    FieldChange,
    GdprReceipt,
    GdprRequest,
    Merge,
)

REDACTED = "[erased]"


class PrivacyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------ requests
    async def insert_request(self, values: dict[str, Any]) -> GdprRequest:
        stmt = insert(GdprRequest).values(**values).returning(GdprRequest)
        return (await self.session.execute(stmt)).scalar_one()

    async def get_request(
        self, request_id: uuid.UUID, kind: str | None = None, *, lock: bool = False
    ) -> GdprRequest | None:
        stmt = select(GdprRequest).where(GdprRequest.id == request_id)
        if kind is not None:
            stmt = stmt.where(GdprRequest.kind == kind)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def erasure_of(self, contact_id: uuid.UUID) -> GdprRequest | None:
        stmt = select(GdprRequest).where(
            GdprRequest.contact_id == contact_id, GdprRequest.kind == "erasure"
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def exports_of(self, contact_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        stmt = select(GdprRequest.id).where(
            GdprRequest.contact_id.in_(contact_ids), GdprRequest.kind == "export"
        )
        return list((await self.session.scalars(stmt)).all())

    async def complete(self, request_id: uuid.UUID) -> None:
        await self.session.execute(
            update(GdprRequest)
            .where(GdprRequest.id == request_id)
            .values(status="completed", completed_at=func.now())
        )

    async def add_receipt(self, request_id: uuid.UUID, service: str, details: Any) -> bool:
        """Record a service's answer; False if it had answered already (redelivery)."""
        stmt = (
            pg_insert(GdprReceipt)
            .values(request_id=request_id, service=service, details=details)
            .on_conflict_do_nothing()
            .returning(GdprReceipt.service)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def receipts(self, request_id: uuid.UUID) -> list[GdprReceipt]:
        stmt = (
            select(GdprReceipt)
            .where(GdprReceipt.request_id == request_id)
            .order_by(GdprReceipt.received_at, GdprReceipt.service)
        )
        return list((await self.session.scalars(stmt)).all())

    # ------------------------------------------------------------------ the person
    async def contact(self, contact_id: uuid.UUID, *, lock: bool = False) -> Contact | None:
        """The contact whatever its state (deleted, merged, erased)."""
        stmt = select(Contact).where(Contact.id == contact_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def merged_into(self, winner_ids: list[uuid.UUID]) -> list[Contact]:
        """Every contact merged (directly or through earlier merges) into ``winner_ids``."""
        found: dict[uuid.UUID, Contact] = {}
        frontier = list(winner_ids)
        for _depth in range(20):
            if not frontier:
                break
            rows = await self.session.scalars(
                select(Contact).where(Contact.merged_into_id.in_(frontier)).with_for_update()
            )
            frontier = []
            for row in rows:
                if row.id not in found and row.id not in winner_ids:
                    found[row.id] = row
                    frontier.append(row.id)
        return list(found.values())

    async def contacts(self, ids: list[uuid.UUID]) -> list[Contact]:
        stmt = select(Contact).where(Contact.id.in_(ids)).order_by(Contact.created_at)
        return list((await self.session.scalars(stmt)).all())

    async def links(self, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        rows = await self.session.execute(
            select(ContactCompany, Company.name)
            .join(Company, Company.id == ContactCompany.company_id)
            .where(ContactCompany.contact_id.in_(ids))
        )
        return [
            {
                "contact_id": link.contact_id,
                "company_id": link.company_id,
                "company_name": name,
                "role": link.role,
                "primary": link.is_primary,
                "linked_at": link.created_at,
            }
            for link, name in rows.all()
        ]

    async def activities(self, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        rows = await self.session.scalars(
            select(Activity).where(Activity.contact_id.in_(ids)).order_by(Activity.occurred_at)
        )
        return [
            {
                "id": a.id,
                "source": a.source,
                "kind": a.kind,
                "contact_id": a.contact_id,
                "company_id": a.company_id,
                "subject": a.subject,
                "body": a.body,
                "details": a.details,
                "occurred_at": a.occurred_at,
                "created_by": a.created_by,
            }
            for a in rows
        ]

    async def history(self, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        rows = await self.session.scalars(
            select(FieldChange)
            .where(FieldChange.entity == "contact", FieldChange.record_id.in_(ids))
            .order_by(FieldChange.id)
        )
        return [
            {
                "record_id": c.record_id,
                "field": c.field,
                "from": c.old_value,
                "to": c.new_value,
                "reason": c.reason,
                "actor": c.actor,
                "changed_at": c.changed_at,
            }
            for c in rows
        ]

    async def merges(self, ids: list[uuid.UUID]) -> list[Merge]:
        stmt = select(Merge).where(
            or_(Merge.winner_id.in_(ids), *(Merge.loser_ids.contains([i]) for i in ids))
        )
        return list((await self.session.scalars(stmt)).all())

    # ------------------------------------------------------------------ forgetting
    async def anonymise(self, ids: list[uuid.UUID], actor: str) -> int:
        result = await self.session.execute(
            update(Contact)
            .where(Contact.id.in_(ids))
            .values(
                first_name="Erased",
                last_name=None,
                email=None,
                emails=[],
                phone=None,
                phones=[],
                title=None,
                address={},
                custom_fields={},
                sensitive_fields={},
                consent={},
                external_id=None,
                search_text="",
                erased_at=func.now(),
                deleted_at=func.coalesce(Contact.deleted_at, func.now()),
                updated_by=actor,
                updated_at=func.now(),
                version=Contact.version + 1,
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def redact_activities(self, ids: list[uuid.UUID]) -> int:
        result = await self.session.execute(
            update(Activity)
            .where(Activity.contact_id.in_(ids))
            .values(
                subject=REDACTED,
                body=None,
                details={},
                version=Activity.version + 1,
                updated_at=func.now(),
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def redact_history(self, ids: list[uuid.UUID]) -> int:
        """Keep who changed which field when; drop the values."""
        marker = literal(REDACTED, JSONB)
        result = await self.session.execute(
            update(FieldChange)
            .where(FieldChange.entity == "contact", FieldChange.record_id.in_(ids))
            .values(old_value=marker, new_value=marker)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def forget_merges(self, ids: list[uuid.UUID]) -> int:
        """Merge snapshots hold pre-merge values: drop them (such merges can't be undone)."""
        merges = await self.merges(ids)
        for merge in merges:
            await self.session.execute(
                update(Merge)
                .where(Merge.id == merge.id)
                .values(
                    snapshot={},
                    status="erased" if merge.status == "merged" else merge.status,
                )
            )
        return len(merges)
