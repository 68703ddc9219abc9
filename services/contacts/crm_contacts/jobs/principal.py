"""The caller a job acts as: stored with the job, restored by the worker."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.records.http import context_for
from crm_contacts.records.service import RecordContext
from crm_contacts.settings import ContactsSettings
from crm_lib.auth import Principal


def principal_record(principal: Principal) -> dict[str, Any]:
    """What the worker needs to act as the caller later (visibility, ownership)."""
    return {
        "tenant_id": str(principal.tenant_id),
        "subject": principal.subject,
        "kind": principal.kind,
        "user_id": str(principal.user_id) if principal.user_id else None,
        "roles": sorted(principal.roles),
        "scopes": sorted(principal.scopes) if principal.scopes is not None else None,
        "token_id": principal.token_id,
    }


def principal_of(record: dict[str, Any]) -> Principal:
    return Principal(
        tenant_id=uuid.UUID(record["tenant_id"]),
        subject=record["subject"],
        kind=record["kind"],
        user_id=uuid.UUID(record["user_id"]) if record.get("user_id") else None,
        roles=frozenset(record.get("roles") or ()),
        scopes=frozenset(record["scopes"]) if record.get("scopes") is not None else None,
        token_id=record.get("token_id") or "job",
    )


async def record_context(
    session: AsyncSession, principal_record: dict[str, Any], settings: ContactsSettings
) -> RecordContext:
    return await context_for(session, principal_of(principal_record), settings)
