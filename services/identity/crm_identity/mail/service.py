"""Outgoing email: requested through the outbox, sent by the identity worker."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from crm_lib.events import emit

EMAIL_REQUESTED = "identity.email.requested"


async def request_email(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    to: str,
    subject: str,
    body: str,
    kind: str,
    actor: str | None = None,
) -> None:
    """Queue an email in the caller's transaction: it leaves only if the change commits."""
    await emit(
        session,
        EMAIL_REQUESTED,
        tenant_id,
        {"to": to, "subject": subject, "body": body, "kind": kind, "message_id": str(uuid.uuid4())},
        actor=actor,
    )
