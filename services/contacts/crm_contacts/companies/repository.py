"""All SQL of the companies module beyond the generic record repository: domain
probes and the search text of a company's contacts."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import Company, Contact


class CompanyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def domain_holder(self, domain: str, exclude: uuid.UUID | None = None) -> Any | None:
        """(id, owner_id) of a live company with this domain, or None."""
        stmt = select(Company.id, Company.owner_id).where(
            Company.domain == domain, Company.deleted_at.is_(None)
        )
        if exclude is not None:
            stmt = stmt.where(Company.id != exclude)
        return (await self.session.execute(stmt.limit(1))).first()

    async def live_contacts(self, company_id: uuid.UUID) -> list[Contact]:
        contacts = await self.session.scalars(
            select(Contact).where(Contact.company_id == company_id, Contact.deleted_at.is_(None))
        )
        return list(contacts)

    async def name(self, company_id: uuid.UUID) -> str | None:
        return await self.session.scalar(select(Company.name).where(Company.id == company_id))

    async def set_contact_search_text(self, contact_id: uuid.UUID, search_text: str) -> None:
        await self.session.execute(
            update(Contact).where(Contact.id == contact_id).values(search_text=search_text)
        )
