"""Marketing's answers to GDPR requests (``crm_lib.privacy``).

Marketing holds no per-person data yet (campaigns only): it still answers every
export and erasure, so a request completes and the receipt says so. When
recipients, sends and consents arrive, their collector/eraser go here (matching
by contact id or by ``Person.email_sha256``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_lib.events import Subscription
from crm_lib.privacy import Person, privacy_subscription


async def collect(_session: AsyncSession, _person: Person) -> dict[str, Any]:
    return {"records": [], "note": "marketing holds no personal data about this contact"}


async def erase(_session: AsyncSession, _person: Person) -> dict[str, int]:
    return {"records": 0}


def marketing_privacy_subscription() -> Subscription:
    return privacy_subscription("marketing", collector=collect, eraser=erase)
