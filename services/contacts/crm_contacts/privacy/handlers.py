"""Contacts' side of the GDPR protocol (``crm_lib.privacy``).

* ``contacts-gdpr``: contacts answers export requests like every other service
  (its part: the contact and its merged duplicates, company links, activities,
  field history, merges). Erasure happens in the request itself, so no eraser here.
* ``contacts-gdpr-receipts``: every service's export parts and erasure receipts;
  a request completes when all of ``PRIVACY_SERVICES`` answered.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.privacy.service import collect, record_receipt
from crm_contacts.records.http import contacts_settings, master_key
from crm_lib.events import EventContext, Subscription
from crm_lib.privacy import Person, privacy_subscription, receipt_subscription
from crm_lib.service import ServiceRuntime


async def on_receipt(ctx: EventContext) -> None:
    await record_receipt(ctx.session, ctx.event.tenant_id, ctx.event.type, ctx.event.data)


def privacy_subscriptions(runtime: ServiceRuntime) -> list[Subscription]:
    key = master_key(contacts_settings(runtime))

    async def collector(session: AsyncSession, person: Person) -> dict[str, Any]:
        return await collect(session, person, key)

    return [privacy_subscription("contacts", collector=collector), receipt_subscription(on_receipt)]
