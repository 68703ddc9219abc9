"""GDPR export and erasure of one contact (owners/admins; API clients need ``contacts:admin``).

* Export: a request row, an access-audit row and ``contacts.gdpr.export_requested``;
  every service (``crm_lib.privacy.PRIVACY_SERVICES``, contacts included) stores its
  part in the object store and answers; the request is ``completed`` once all did.
* Erasure: contacts anonymises the person here and now (the contact and every
  duplicate merged into it: names → "Erased", emails/phones/address/custom and
  sensitive fields/consent/external id cleared, search columns emptied, ``erased_at``
  and ``deleted_at`` set; activities' free text and history values redacted; merge
  snapshots dropped), records its own receipt and emits ``contacts.contact.erased``
  (ids and email fingerprints only); the other services answer with receipts.
  Asking again for the same contact answers the same erasure.
* A contact merged into another is handled through the record it was merged into
  (409 naming it): that record carries the person's data now.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.access import ADMINS, Access
from crm_contacts.crypto import TenantCipher
from crm_contacts.models import Contact, GdprRequest
from crm_contacts.privacy.repository import PrivacyRepository
from crm_contacts.records.repository import RecordRepository, SearchWordRepository
from crm_contacts.records.service import jsonable
from crm_lib.events import emit
from crm_lib.http import ProblemError
from crm_lib.privacy import PRIVACY_SERVICES, Person, email_fingerprints


def _merged_away(row: Contact) -> ProblemError:
    return ProblemError(
        409,
        f"This contact was merged into {row.merged_into_id}: "
        "make the request for that contact (it holds this person's data now).",
        title="Merged contact",
        merged_into_id=str(row.merged_into_id),
    )


def request_view(request: GdprRequest, receipts: list[Any]) -> dict[str, Any]:
    answered = {r.service: r for r in receipts}
    return {
        "id": str(request.id),
        "kind": request.kind,
        "contact_id": str(request.contact_id),
        "status": request.status,
        "reason": request.reason,
        "requested_by": request.requested_by,
        "created_at": jsonable(request.created_at),
        "completed_at": jsonable(request.completed_at),
        "receipts": {
            service: (
                {
                    "received_at": jsonable(answered[service].received_at),
                    **answered[service].details,
                }
                if service in answered
                else None
            )
            for service in PRIVACY_SERVICES
        },
        "pending": [s for s in PRIVACY_SERVICES if s not in answered],
    }


class PrivacyService:
    def __init__(self, session: AsyncSession, access: Access) -> None:
        self.session = session
        self.access = access
        self.repo = PrivacyRepository(session)

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.access.principal.tenant_id

    def require_admin(self) -> None:
        self.access.require(ADMINS, "contacts:admin", "handle GDPR requests")

    async def _person(self, contact_id: uuid.UUID) -> tuple[Contact, list[Contact]]:
        row = await self.repo.contact(contact_id, lock=True)
        if row is None:
            raise ProblemError(404, "No such contact.")
        if row.merged_into_id is not None and row.erased_at is None:
            raise _merged_away(row)
        return row, await self.repo.merged_into([row.id])

    async def _audit(self, action: str, request: GdprRequest, count: int) -> None:
        await RecordRepository(self.session, Contact).audit(
            actor=self.access.actor,
            action=action,
            entity="contact",
            record_count=count,
            details={"request_id": str(request.id), "contact_id": str(request.contact_id)},
        )

    async def view(self, request: GdprRequest) -> dict[str, Any]:
        return request_view(request, await self.repo.receipts(request.id))

    async def get(self, kind: str, request_id: uuid.UUID) -> dict[str, Any]:
        self.require_admin()
        request = await self.repo.get_request(request_id, kind)
        if request is None:
            raise ProblemError(404, f"No such GDPR {kind}.")
        return await self.view(request)

    # ------------------------------------------------------------------ export
    async def request_export(self, contact_id: uuid.UUID) -> dict[str, Any]:
        self.require_admin()
        row, merged = await self._person(contact_id)
        everyone = [row, *merged]
        request = await self.repo.insert_request(
            {
                "id": uuid.uuid4(),
                "kind": "export",
                "contact_id": row.id,
                "requested_by": self.access.actor,
            }
        )
        await self._audit("gdpr_export", request, len(everyone))
        await emit(
            self.session,
            "contacts.gdpr.export_requested",
            self.tenant_id,
            {
                "request_id": str(request.id),
                "contact_id": str(row.id),
                "contact_ids": [str(r.id) for r in everyone],
                "email_sha256": email_fingerprints(
                    e["address"] for r in everyone for e in r.emails
                ),
            },
            actor=self.access.actor,
        )
        return await self.view(request)

    async def completed_export(self, request_id: uuid.UUID) -> GdprRequest:
        """The export to download (audited); 409 while services are still answering."""
        self.require_admin()
        request = await self.repo.get_request(request_id, "export")
        if request is None:
            raise ProblemError(404, "No such GDPR export.")
        if request.status != "completed":
            raise ProblemError(
                409, "The export is still being gathered: not every service has answered yet."
            )
        await self._audit("gdpr_export_download", request, 1)
        return request

    # ------------------------------------------------------------------ erasure
    async def request_erasure(
        self, contact_id: uuid.UUID, reason: str
    ) -> tuple[dict[str, Any], bool, list[uuid.UUID]]:
        """(the erasure, whether it is new, export requests whose stored parts to drop)."""
        self.require_admin()
        # The contact's row lock serialises concurrent erasures: the second sees the first.
        if await self.repo.contact(contact_id, lock=True) is None:
            raise ProblemError(404, "No such contact.")
        existing = await self.repo.erasure_of(contact_id)
        if existing is not None:
            return await self.view(existing), False, []
        row, merged = await self._person(contact_id)
        if row.erased_at is not None:
            raise ProblemError(
                409, "This contact was already erased (as a duplicate of another erased contact)."
            )
        everyone = [row, *merged]
        ids = [r.id for r in everyone]
        fingerprints = email_fingerprints(e["address"] for r in everyone for e in r.emails)
        actor = self.access.actor
        texts = [r.search_text for r in everyone]
        records = {
            "contacts": await self.repo.anonymise(ids, actor),
            "search_words": len(await SearchWordRepository(self.session).forget(texts)),
            "activities": await self.repo.redact_activities(ids),
            "history": await self.repo.redact_history(ids),
            "merges": await self.repo.forget_merges(ids),
        }
        await RecordRepository(self.session, Contact).add_changes(
            [
                {
                    "entity": "contact",
                    "record_id": i,
                    "field": "erased",
                    "old_value": None,
                    "new_value": True,
                    "reason": "erase",
                    "actor": actor,
                }
                for i in ids
            ]
        )
        request = await self.repo.insert_request(
            {
                "id": uuid.uuid4(),
                "kind": "erasure",
                "contact_id": row.id,
                "reason": reason,
                "requested_by": actor,
            }
        )
        await self.repo.add_receipt(request.id, "contacts", {"records": records})
        await self._audit("gdpr_erasure", request, len(ids))
        await emit(
            self.session,
            "contacts.contact.erased",
            self.tenant_id,
            {
                "contact_id": str(row.id),
                "erasure_id": str(request.id),
                "contact_ids": [str(i) for i in ids],
                "email_sha256": fingerprints,
            },
            actor=actor,
        )
        return await self.view(request), True, await self.repo.exports_of(ids)


async def record_receipt(
    session: AsyncSession, tenant_id: uuid.UUID, event_type: str, data: dict[str, Any]
) -> GdprRequest | None:
    """A service answered: store its receipt; the request completes once all have.

    Returns the request if this receipt completed it.
    """
    service = event_type.split(".", 1)[0]
    if service not in PRIVACY_SERVICES:
        return None
    key = "request_id" if event_type.endswith(".export_ready") else "erasure_id"
    repo = PrivacyRepository(session)
    request = await repo.get_request(uuid.UUID(str(data[key])), lock=True)
    if request is None:
        return None
    details = {k: v for k, v in data.items() if k in ("object", "bytes", "records")}
    if not await repo.add_receipt(request.id, service, details):
        return None
    answered = {r.service for r in await repo.receipts(request.id)}
    if request.status == "completed" or not set(PRIVACY_SERVICES) <= answered:
        return None
    await repo.complete(request.id)
    kind = "export" if request.kind == "export" else "erasure"
    await emit(
        session,
        f"contacts.gdpr.{kind}_completed",
        tenant_id,
        {"request_id": str(request.id), "contact_id": str(request.contact_id)},
    )
    return request


async def collect(
    session: AsyncSession, person: Person, master_key: bytes | None
) -> dict[str, Any]:
    """Everything contacts holds about the person (sensitive values decrypted)."""
    repo = PrivacyRepository(session)
    ids = list(person.contact_ids)
    cipher = TenantCipher(session, person.tenant_id, master_key)
    contacts = []
    for row in await repo.contacts(ids):
        sensitive = {}
        for key, token in row.sensitive_fields.items():
            sensitive[key] = await cipher.decrypt(row.id, key, token)
        contacts.append(
            {
                "id": row.id,
                "first_name": row.first_name,
                "last_name": row.last_name,
                "emails": row.emails,
                "phones": row.phones,
                "title": row.title,
                "company_id": row.company_id,
                "address": row.address,
                "source": row.source,
                "lifecycle_stage": row.lifecycle_stage,
                "owner_id": row.owner_id,
                "tag_ids": row.tag_ids,
                "custom_fields": row.custom_fields,
                "sensitive_fields": sensitive,
                "consent": row.consent,
                "external_id": row.external_id,
                "created_at": row.created_at,
                "created_by": row.created_by,
                "updated_at": row.updated_at,
                "deleted_at": row.deleted_at,
                "merged_into_id": row.merged_into_id,
                "erased_at": row.erased_at,
            }
        )
    return {
        "contacts": contacts,
        "company_links": await repo.links(ids),
        "activities": await repo.activities(ids),
        "history": await repo.history(ids),
        "merges": [
            {
                "id": m.id,
                "entity": m.entity,
                "winner_id": m.winner_id,
                "loser_ids": m.loser_ids,
                "status": m.status,
                "created_at": m.created_at,
            }
            for m in await repo.merges(ids)
        ],
    }
