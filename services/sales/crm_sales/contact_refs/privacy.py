"""Sales' answers to GDPR requests (``crm_lib.privacy``).

* Export: the person's contact cards and every deal naming them.
* Erasure: the cards become tombstones ("Erased", no email); deals keep their
  (now anonymous) contact reference and their business figures.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_lib.events import Subscription
from crm_lib.privacy import Person, privacy_subscription
from crm_sales.contact_refs.repository import ContactRefRepository


async def collect(session: AsyncSession, person: Person) -> dict[str, Any]:
    repo = ContactRefRepository(session)
    ids = list(person.contact_ids)
    cards = [
        {
            "id": c.id,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "email": c.email,
            "company_id": c.company_id,
            "status": c.status,
            "merged_into_id": c.merged_into_id,
            "erased_at": c.erased_at,
            "updated_at": c.updated_at,
        }
        for c in await repo.cards(ids)
    ]
    return {"contact_cards": cards, "deals": await repo.deals_of(ids)}


async def erase(session: AsyncSession, person: Person) -> dict[str, int]:
    repo = ContactRefRepository(session)
    ids = list(person.contact_ids)
    return {
        "contact_cards": await repo.erase_cards(ids),
        "deals_kept": len(await repo.deals_of(ids)),
    }


def sales_privacy_subscription() -> Subscription:
    return privacy_subscription("sales", collector=collect, eraser=erase)
