"""All SQL of the contacts module beyond the generic record repository: company
lookups for a contact, duplicate probes, external ids and company links."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.models import Company, Contact, ContactCompany


class ContactRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def live_company(self, company_id: uuid.UUID) -> Any | None:
        """(name, owner_id) of a live company, or None."""
        return (
            await self.session.execute(
                select(Company.name, Company.owner_id).where(
                    Company.id == company_id, Company.deleted_at.is_(None)
                )
            )
        ).first()

    @staticmethod
    def _live(exclude: uuid.UUID | None) -> list[Any]:
        live: list[ColumnElement[bool]] = [Contact.deleted_at.is_(None)]
        if exclude is not None:
            live.append(Contact.id != exclude)
        return live

    async def with_emails(
        self, addresses: list[str], exclude: uuid.UUID | None
    ) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
        """(id, owner_id) of up to 5 live contacts whose primary email is one of these."""
        rows = await self.session.execute(
            select(Contact.id, Contact.owner_id)
            .where(Contact.email.in_(addresses), *self._live(exclude))
            .limit(5)
        )
        return [(r[0], r[1]) for r in rows.all()]

    async def with_phones(
        self, numbers: list[str], exclude: uuid.UUID | None
    ) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
        """(id, owner_id) of up to 5 live contacts whose primary phone is one of these."""
        rows = await self.session.execute(
            select(Contact.id, Contact.owner_id)
            .where(Contact.phone.in_(numbers), *self._live(exclude))
            .limit(5)
        )
        return [(r[0], r[1]) for r in rows.all()]

    async def similar_names_at(
        self, company_id: uuid.UUID, name: str, threshold: float, exclude: uuid.UUID | None
    ) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
        """(id, owner_id) of up to 5 live contacts of the company whose lower-cased
        "first last" is similar (trigrams) to ``name``."""
        full = func.lower(func.concat_ws(" ", Contact.first_name, Contact.last_name))
        rows = await self.session.execute(
            select(Contact.id, Contact.owner_id)
            .where(
                Contact.company_id == company_id,
                func.extensions.similarity(full, name) >= threshold,
                *self._live(exclude),
            )
            .limit(5)
        )
        return [(r[0], r[1]) for r in rows.all()]

    async def external_id_holder(
        self, external_id: str, exclude: uuid.UUID | None = None
    ) -> Any | None:
        """(id, owner_id) of a live contact with this external id, or None."""
        stmt = select(Contact.id, Contact.owner_id).where(
            Contact.external_id == external_id, Contact.deleted_at.is_(None)
        )
        if exclude is not None:
            stmt = stmt.where(Contact.id != exclude)
        return (await self.session.execute(stmt.limit(1))).first()

    async def set_primary_link(self, contact_id: uuid.UUID, company_id: uuid.UUID | None) -> None:
        await self.session.execute(
            update(ContactCompany)
            .where(ContactCompany.contact_id == contact_id, ContactCompany.is_primary)
            .values(is_primary=False)
        )
        if company_id is not None:
            stmt = insert(ContactCompany).values(
                contact_id=contact_id, company_id=company_id, is_primary=True
            )
            await self.session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[ContactCompany.contact_id, ContactCompany.company_id],
                    set_={"is_primary": True},
                )
            )

    async def links(
        self, contact_id: uuid.UUID, owners: frozenset[uuid.UUID] | None
    ) -> list[tuple[ContactCompany, str]]:
        """The contact's links to live companies of ``owners`` (None: all), with their
        names, primary first."""
        visible = [] if owners is None else [Company.owner_id.in_(sorted(owners))]
        rows = await self.session.execute(
            select(ContactCompany, Company.name)
            .join(Company, Company.id == ContactCompany.company_id)
            .where(ContactCompany.contact_id == contact_id, Company.deleted_at.is_(None), *visible)
            .order_by(ContactCompany.is_primary.desc(), Company.name)
        )
        return [(link, name) for link, name in rows.all()]

    async def upsert_link(
        self, contact_id: uuid.UUID, company_id: uuid.UUID, role: str | None
    ) -> None:
        stmt = insert(ContactCompany).values(
            contact_id=contact_id, company_id=company_id, role=role, is_primary=False
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[ContactCompany.contact_id, ContactCompany.company_id],
                set_={"role": role},
            )
        )

    async def delete_link(self, contact_id: uuid.UUID, company_id: uuid.UUID) -> int:
        """Rows deleted (0 or 1)."""
        result = await self.session.execute(
            delete(ContactCompany).where(
                ContactCompany.contact_id == contact_id, ContactCompany.company_id == company_id
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
