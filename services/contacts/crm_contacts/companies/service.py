"""Companies: create, read, update, delete (contacts keep their links via FK rules)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.companies import schemas
from crm_contacts.companies.repository import CompanyRepository
from crm_contacts.models import Company
from crm_contacts.records.query import Column
from crm_contacts.records.schemas import Duplicate
from crm_contacts.records.service import EntityDef, RecordContext, RecordService

COMPANY = EntityDef(
    name="company",
    model=Company,
    columns={
        "owner_id": Column(Company.owner_id, "uuid"),
        "name": Column(Company.name, "text"),
        "domain": Column(Company.domain, "text"),
        "industry": Column(Company.industry, "text"),
        "size": Column(Company.size, "enum"),
        "created_at": Column(Company.created_at, "datetime"),
        "updated_at": Column(Company.updated_at, "datetime"),
        "id": Column(Company.id, "uuid"),
    },
    default_sort="-updated_at",
    event_prefix="contacts.company",
    tracked=("name", "domain", "industry", "size", "address", "owner_id"),
    output_fields=(
        "id",
        "name",
        "domain",
        "industry",
        "size",
        "address",
        "owner_id",
        "tags",
        "custom_fields",
        "created_at",
        "created_by",
        "updated_at",
        "updated_by",
        "version",
    ),
)


def company_search_text(name: str, domain: str | None) -> str:
    return " ".join(p.lower() for p in (name, domain) if p)


class CompanyService(RecordService):
    entity = COMPANY
    upsert_keys = ("domain",)

    def __init__(self, session: AsyncSession, ctx: RecordContext) -> None:
        super().__init__(session, ctx)
        self.companies = CompanyRepository(session)

    def key_value(self, key: str, data: Any) -> Any:
        value = super().key_value(key, data)
        return value.lower() if isinstance(value, str) else value

    async def _domain_free(self, domain: str | None, exclude: uuid.UUID | None = None) -> None:
        if domain is None:
            return
        existing = await self.companies.domain_holder(domain, exclude)
        if existing is not None:
            from crm_contacts.contacts.service import duplicate_problem

            visible = self.access.may_read(existing.owner_id)
            raise duplicate_problem(
                [Duplicate(existing.id, "same domain", visible)], forceable=False, entity="company"
            )

    async def create(
        self, data: schemas.CompanyCreate, *, allow_duplicate: bool = False
    ) -> Company:
        self.access.require_write()
        record_id = uuid.uuid4()
        owner_id = await self.owner_for_create(data.owner_id)
        domain = data.domain.lower() if data.domain else None
        if not allow_duplicate:
            await self._domain_free(domain)
        custom, sensitive = await self.custom_values(record_id, data.custom_fields, creating=True)
        name = data.name.strip()
        row = await self.repo.insert(
            {
                "id": record_id,
                "name": name,
                "domain": domain,
                "industry": data.industry,
                "size": data.size,
                "address": msgspec.to_builtins(data.address) if data.address else {},
                "owner_id": owner_id,
                "tag_ids": await self.tags.resolve(data.tags) if data.tags else [],
                "custom_fields": custom,
                "sensitive_fields": sensitive,
                "created_by": self.access.actor,
                "updated_by": self.access.actor,
                "search_text": company_search_text(name, domain),
            }
        )
        await self.record_history(record_id, {"created": {"from": None, "to": "create"}}, "create")
        fields = {k: v for k, v in self.snapshot(row).items() if v not in (None, [], {}, "")}
        await self.announce(
            "created",
            row,
            {
                "fields": self.public_changes(
                    {k: {"from": None, "to": v} for k, v in fields.items()}
                )
            },
        )
        return row

    async def update(
        self, record_id: uuid.UUID, data: schemas.CompanyUpdate, if_match: int | None
    ) -> Company:
        row = await self.writable(record_id, if_match)
        given = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        values: dict[str, Any] = {}
        if "name" in given:
            values["name"] = given["name"].strip()
        if "domain" in given:
            values["domain"] = given["domain"].lower() if given["domain"] else None
            await self._domain_free(values["domain"], exclude=record_id)
        for key in ("industry", "size"):
            if key in given:
                values[key] = given[key]
        if "address" in given:
            values["address"] = msgspec.to_builtins(given["address"]) if given["address"] else {}
        values.update(await self.common_update_values(row, given))
        values["search_text"] = company_search_text(
            values.get("name", row.name), values.get("domain", row.domain)
        )
        updated, changes = await self.apply_update(row, values)
        if "name" in changes:
            await self._refresh_contact_search(record_id)
        return updated

    async def _refresh_contact_search(self, company_id: uuid.UUID) -> None:
        """Contacts search by their company's name: re-derive it after a rename."""
        from crm_contacts.contacts.service import row_search_text

        contacts = await self.companies.live_contacts(company_id)
        name = await self.companies.name(company_id)
        for contact in contacts:
            await self.companies.set_contact_search_text(contact.id, row_search_text(contact, name))
