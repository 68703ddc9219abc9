"""Contacts: create (with duplicate detection), read, update, delete, links to companies."""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.contacts import schemas
from crm_contacts.contacts.repository import ContactRepository
from crm_contacts.models import Contact
from crm_contacts.records.query import Column
from crm_contacts.records.schemas import Duplicate
from crm_contacts.records.service import EntityDef, RecordContext, RecordService
from crm_lib.http import ProblemError

CONTACT = EntityDef(
    name="contact",
    model=Contact,
    columns={
        "owner_id": Column(Contact.owner_id, "uuid"),
        "company_id": Column(Contact.company_id, "uuid"),
        "lifecycle_stage": Column(Contact.lifecycle_stage, "enum"),
        "source": Column(Contact.source, "text"),
        "email": Column(Contact.email, "text"),
        "phone": Column(Contact.phone, "text"),
        "external_id": Column(Contact.external_id, "text"),
        "first_name": Column(Contact.first_name, "text"),
        "last_name": Column(Contact.last_name, "text"),
        "title": Column(Contact.title, "text"),
        "created_at": Column(Contact.created_at, "datetime"),
        "updated_at": Column(Contact.updated_at, "datetime"),
        "id": Column(Contact.id, "uuid"),
    },
    default_sort="-updated_at",
    event_prefix="contacts.contact",
    tracked=(
        "first_name",
        "last_name",
        "emails",
        "phones",
        "title",
        "company_id",
        "address",
        "source",
        "lifecycle_stage",
        "owner_id",
        "consent",
        "external_id",
    ),
    output_fields=(
        "id",
        "first_name",
        "last_name",
        "email",
        "emails",
        "phone",
        "phones",
        "title",
        "company_id",
        "address",
        "source",
        "lifecycle_stage",
        "owner_id",
        "tags",
        "custom_fields",
        "consent",
        "external_id",
        "created_at",
        "created_by",
        "updated_at",
        "updated_by",
        "version",
    ),
)


def phone_digits(number: str) -> str:
    digits = re.sub(r"\D", "", number)
    return ("+" if number.strip().startswith("+") else "") + digits


def normalise_emails(entries: list[schemas.EmailEntry]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for entry in entries:
        address = entry.address.strip().lower()
        if address not in seen:
            seen.add(address)
            out.append({"address": address, **({"label": entry.label} if entry.label else {})})
    return out


def normalise_phones(entries: list[schemas.PhoneEntry]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for entry in entries:
        number = phone_digits(entry.number)
        if len(number.lstrip("+")) < 3:
            raise ProblemError(
                422,
                "A phone number needs at least 3 digits.",
                title="Validation failed",
                errors=[{"field": "phones", "message": f"{entry.number!r} has too few digits"}],
            )
        if number not in seen:
            seen.add(number)
            out.append({"number": number, **({"label": entry.label} if entry.label else {})})
    return out


def search_text(values: dict[str, Any], company_name: str | None) -> str:
    """The lower-cased haystack search matches: names, emails (and their parts), phones."""
    parts = [values.get("first_name"), values.get("last_name"), company_name]
    for entry in values.get("emails") or []:
        address = entry["address"]
        local, _, domain = address.partition("@")
        parts += [address, local.replace(".", " "), domain]
    for entry in values.get("phones") or []:
        parts.append(entry["number"].lstrip("+"))
    if values.get("external_id"):
        parts.append(values["external_id"])
    return " ".join(p.lower() for p in parts if p)[:4000]


#: The contact columns ``search_text`` is built from (besides the company's name).
SEARCHED_FIELDS = ("first_name", "last_name", "emails", "phones", "external_id")


def row_search_text(contact: Any, company_name: str | None) -> str:
    """``search_text`` re-derived from a stored contact (its company renamed or changed)."""
    return search_text({key: getattr(contact, key) for key in SEARCHED_FIELDS}, company_name)


class ContactService(RecordService):
    entity = CONTACT
    upsert_keys = ("email", "external_id")

    def __init__(self, session: AsyncSession, ctx: RecordContext) -> None:
        super().__init__(session, ctx)
        self.contacts = ContactRepository(session)

    def key_value(self, key: str, data: Any) -> Any:
        if key == "email":
            emails = normalise_emails(data.emails[:1])
            return emails[0]["address"] if emails else None
        return super().key_value(key, data)

    async def _company_name(
        self, company_id: uuid.UUID | None, *, choosing: bool = True
    ) -> str | None:
        """The name of a live company; ``choosing`` (the caller names it for a contact):
        only one the caller may see, else the same 422 as for no company at all."""
        if company_id is None:
            return None
        found = await self.contacts.live_company(company_id)
        name = None
        if found is not None and (not choosing or self.access.may_read(found.owner_id)):
            name = found.name
        if name is None:
            raise ProblemError(
                422,
                "company_id does not name a company.",
                title="Validation failed",
                errors=[{"field": "company_id", "message": "no such company"}],
            )
        return str(name)

    async def duplicates(
        self,
        emails: list[dict[str, Any]],
        phones: list[dict[str, Any]],
        first: str | None,
        last: str | None,
        company_id: uuid.UUID | None,
        exclude: uuid.UUID | None = None,
    ) -> list[Duplicate]:
        """Existing contacts with the same email or phone, or a similar name at the company."""
        found: dict[uuid.UUID, Duplicate] = {}
        may_read = self.access.may_read

        def add(rows: Any, reason: str) -> None:
            for row_id, owner_id in rows:
                found.setdefault(row_id, Duplicate(row_id, reason, may_read(owner_id)))

        addresses = [e["address"] for e in emails]
        if addresses:
            add(await self.contacts.with_emails(addresses, exclude), "same email")
        numbers = [p["number"] for p in phones]
        if numbers:
            add(await self.contacts.with_phones(numbers, exclude), "same phone")
        name = " ".join(p for p in (first, last) if p).lower()
        if name and company_id is not None:
            add(
                await self.contacts.similar_names_at(
                    company_id, name, self.ctx.duplicate_similarity, exclude
                ),
                "similar name at the same company",
            )
        # The ones the caller sees first: the answer names those (others stay anonymous).
        return sorted(found.values(), key=lambda d: not d.visible)

    async def create(
        self, data: schemas.ContactCreate, *, allow_duplicate: bool = False, reason: str = "create"
    ) -> Contact:
        self.access.require_write()
        record_id = uuid.uuid4()
        owner_id = await self.owner_for_create(data.owner_id)
        emails = normalise_emails(data.emails)
        phones = normalise_phones(data.phones)
        company_name = await self._company_name(data.company_id)
        if not allow_duplicate:
            dupes = await self.duplicates(
                emails, phones, data.first_name, data.last_name, data.company_id
            )
            if dupes:
                raise duplicate_problem(dupes)
        if not (data.first_name or data.last_name or emails or phones):
            raise ProblemError(
                422,
                "A contact needs a name, an email or a phone.",
                title="Validation failed",
                errors=[{"field": "first_name", "message": "name, email or phone required"}],
            )
        await self._external_id_free(data.external_id)
        custom, sensitive = await self.custom_values(record_id, data.custom_fields, creating=True)
        values: dict[str, Any] = {
            "id": record_id,
            "first_name": data.first_name,
            "last_name": data.last_name,
            "emails": emails,
            "email": emails[0]["address"] if emails else None,
            "phones": phones,
            "phone": phones[0]["number"] if phones else None,
            "title": data.title,
            "company_id": data.company_id,
            "address": msgspec.to_builtins(data.address) if data.address else {},
            "source": data.source,
            "lifecycle_stage": data.lifecycle_stage,
            "owner_id": owner_id,
            "tag_ids": await self.tags.resolve(data.tags) if data.tags else [],
            "custom_fields": custom,
            "sensitive_fields": sensitive,
            "consent": msgspec.to_builtins(data.consent) if data.consent else {},
            "external_id": data.external_id,
            "created_by": self.access.actor,
            "updated_by": self.access.actor,
        }
        values["search_text"] = search_text(values, company_name)
        row = await self.repo.insert(values)
        if data.company_id is not None:
            await self.set_primary_link(record_id, data.company_id)
        fields = {k: v for k, v in self.snapshot(row).items() if v not in (None, [], {}, "")}
        await self.record_history(record_id, {"created": {"from": None, "to": reason}}, reason)
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

    async def _external_id_free(
        self, external_id: str | None, exclude: uuid.UUID | None = None
    ) -> None:
        if external_id is None:
            return
        existing = await self.contacts.external_id_holder(external_id, exclude)
        if existing is not None:
            visible = self.access.may_read(existing.owner_id)
            raise duplicate_problem(
                [Duplicate(existing.id, "same external_id", visible)], forceable=False
            )

    async def set_primary_link(self, contact_id: uuid.UUID, company_id: uuid.UUID | None) -> None:
        await self.contacts.set_primary_link(contact_id, company_id)

    async def update(
        self, record_id: uuid.UUID, data: schemas.ContactUpdate, if_match: int | None
    ) -> Contact:
        row = await self.writable(record_id, if_match)
        given = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        values: dict[str, Any] = {}
        for key in ("first_name", "last_name", "title", "source", "lifecycle_stage"):
            if key in given:
                values[key] = given[key]
        if "emails" in given:
            values["emails"] = normalise_emails(given["emails"])
            values["email"] = values["emails"][0]["address"] if values["emails"] else None
        if "phones" in given:
            values["phones"] = normalise_phones(given["phones"])
            values["phone"] = values["phones"][0]["number"] if values["phones"] else None
        if "address" in given:
            values["address"] = msgspec.to_builtins(given["address"]) if given["address"] else {}
        if "consent" in given:
            values["consent"] = {**row.consent, **msgspec.to_builtins(given["consent"])}
        if "external_id" in given:
            await self._external_id_free(given["external_id"], exclude=record_id)
            values["external_id"] = given["external_id"]
        values.update(await self.common_update_values(row, given))
        company_id = given.get("company_id", row.company_id)
        if "company_id" in given:
            values["company_id"] = company_id
        merged = {
            "first_name": values.get("first_name", row.first_name),
            "last_name": values.get("last_name", row.last_name),
            "emails": values.get("emails", row.emails),
            "phones": values.get("phones", row.phones),
            "external_id": values.get("external_id", row.external_id),
        }
        choosing = "company_id" in given and company_id != row.company_id
        values["search_text"] = search_text(
            merged, await self._company_name(company_id, choosing=choosing)
        )
        updated, changes = await self.apply_update(row, values)
        if "company_id" in changes:
            await self.set_primary_link(record_id, company_id)
        return updated

    # ------------------------------------------------------------------ company links
    async def links(self, record_id: uuid.UUID) -> list[dict[str, Any]]:
        await self.visible(record_id)
        # Only companies the caller sees (an admin may link a rep's contact to a company
        # the rep cannot see: the rep does not learn its name from here).
        rows = await self.contacts.links(record_id, self.access.readable_owners)
        return [
            {
                "company_id": str(link.company_id),
                "name": name,
                "role": link.role,
                "primary": link.is_primary,
            }
            for link, name in rows
        ]

    async def link(
        self, record_id: uuid.UUID, company_id: uuid.UUID, role: str | None, primary: bool
    ) -> list[dict[str, Any]]:
        row = await self.writable(record_id, None)
        await self._company_name(company_id)
        await self.contacts.upsert_link(record_id, company_id, role)
        if primary and row.company_id != company_id:
            await self.update(record_id, schemas.ContactUpdate(company_id=company_id), None)
        return await self.links(record_id)

    async def unlink(self, record_id: uuid.UUID, company_id: uuid.UUID) -> None:
        row = await self.writable(record_id, None)
        if row.company_id == company_id:
            await self.update(record_id, schemas.ContactUpdate(company_id=None), None)
        deleted = await self.contacts.delete_link(record_id, company_id)
        if not deleted and row.company_id != company_id:
            raise ProblemError(404, "The contact is not linked to this company.")


def duplicate_problem(
    dupes: list[Duplicate], forceable: bool = True, entity: str = "contact"
) -> ProblemError:
    """409 naming the duplicates the caller sees; one they cannot see is only said to
    exist ("a duplicate exists that you cannot see"), with ``id`` null."""
    first = dupes[0]
    hint = " Send ?allow_duplicate=true to create it anyway." if forceable else ""
    what = first.reason.removeprefix("same ")
    if first.visible:
        detail = f"A {entity} with the {what} already exists: {first.id}.{hint}"
    elif first.reason.startswith("same "):
        detail = f"A {entity} with the {what} exists that you cannot see.{hint}"
    else:
        detail = f"A duplicate ({first.reason}) exists that you cannot see.{hint}"
    return ProblemError(
        409,
        detail,
        title=f"Duplicate {entity}",
        type_="https://errors.crm.example/duplicate",
        duplicates=[d.public() for d in dupes],
    )
