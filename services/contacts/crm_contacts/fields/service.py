"""Custom field definitions (owners/admins) and the specs every record write checks."""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.access import ADMINS, Access
from crm_contacts.fields import schemas
from crm_contacts.fields.repository import FieldRepository
from crm_contacts.fields.values import FieldSpec
from crm_contacts.models import CustomFieldDefinition
from crm_lib.events import emit
from crm_lib.http import ProblemError, require_version

#: Custom fields per entity and tenant.
MAX_FIELDS = 300
SELECT_TYPES = ("single_select", "multi_select")


def spec_of(row: CustomFieldDefinition) -> FieldSpec:
    return FieldSpec(
        key=row.key,
        type=row.type,
        required=row.required,
        options=tuple(row.options),
        constraints=row.constraints,
        sensitive=row.sensitive,
        archived=row.archived,
        readable_by=tuple(row.readable_by),
    )


def view(row: CustomFieldDefinition) -> schemas.CustomField:
    return schemas.CustomField(
        row.id,
        row.entity,
        row.key,
        row.label,
        row.type,
        row.required,
        list(row.options),
        dict(row.constraints),
        row.sensitive,
        list(row.readable_by),
        row.position,
        row.archived,
        row.version,
        row.created_at,
        row.updated_at,
    )


def _invalid(field: str, message: str) -> ProblemError:
    return ProblemError(
        422, message, title="Validation failed", errors=[{"field": field, "message": message}]
    )


def _check_shape(
    type_: str, options: list[str], constraints: schemas.Constraints, sensitive: bool
) -> None:
    if type_ in SELECT_TYPES and not options:
        raise _invalid("options", "select fields need at least one option")
    if type_ not in SELECT_TYPES and options:
        raise _invalid("options", "only select fields take options")
    if len({o.casefold() for o in options}) != len(options):
        raise _invalid("options", "options must be unique")
    lo, hi = constraints.min, constraints.max
    if type_ == "date":
        for name, bound in (("min", lo), ("max", hi)):
            if bound is not None and not isinstance(bound, str):
                raise _invalid(f"constraints.{name}", "date bounds are YYYY-MM-DD strings")
    elif any(isinstance(b, str) for b in (lo, hi)):
        raise _invalid("constraints", "bounds are numbers for this type")
    if lo is not None and hi is not None and lo > hi:  # type: ignore[operator]
        raise _invalid("constraints", "min must not exceed max")
    if sensitive and type_ not in ("text", "number", "date", "email"):
        raise _invalid("sensitive", "only text, number, date and email fields can be sensitive")


class FieldService:
    def __init__(self, session: AsyncSession, access: Access) -> None:
        self.session = session
        self.access = access
        self.repo = FieldRepository(session)

    def _require_admin(self) -> None:
        self.access.require(ADMINS, "contacts:admin", "manage custom fields")

    async def specs(self, entity: str) -> dict[str, FieldSpec]:
        return {row.key: spec_of(row) for row in await self.repo.list(entity)}

    async def list(self, entity: str | None) -> list[schemas.CustomField]:
        return [view(r) for r in await self.repo.list(entity)]

    async def get(self, field_id: uuid.UUID) -> CustomFieldDefinition:
        row = await self.repo.get(field_id)
        if row is None:
            raise ProblemError(404, "No such custom field.")
        return row

    async def create(
        self, data: schemas.CustomFieldCreate, encryption_ready: bool
    ) -> schemas.CustomField:
        self._require_admin()
        _check_shape(data.type, data.options, data.constraints, data.sensitive)
        if data.sensitive and not encryption_ready:
            raise ProblemError(
                409,
                "Sensitive fields need encryption at rest, which is not configured "
                "(CRM_CONTACTS_MASTER_KEY).",
            )
        if await self.repo.exists(data.entity, data.key):
            raise ProblemError(409, f"A {data.entity} field with key '{data.key}' already exists.")
        if len(await self.repo.list(data.entity)) >= MAX_FIELDS:
            raise ProblemError(409, f"At most {MAX_FIELDS} custom fields per entity.")
        row = await self.repo.insert(
            entity=data.entity,
            key=data.key,
            label=data.label.strip(),
            type=data.type,
            required=data.required,
            options=data.options,
            constraints=msgspec.to_builtins(data.constraints),
            sensitive=data.sensitive,
            readable_by=sorted(set(data.readable_by)),
            position=data.position,
        )
        await self._event("created", row)
        return view(row)

    async def update(
        self, field_id: uuid.UUID, data: schemas.CustomFieldUpdate, if_match: int | None
    ) -> schemas.CustomField:
        self._require_admin()
        row = await self.get(field_id)
        require_version(if_match, row.version, "field")
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        options = changes.get("options", list(row.options))
        constraints = changes.get("constraints")
        if constraints is None:
            constraints = msgspec.convert(row.constraints, schemas.Constraints)
        _check_shape(row.type, options, constraints, row.sensitive)
        if "constraints" in changes:
            changes["constraints"] = msgspec.to_builtins(changes["constraints"])
        if "label" in changes:
            changes["label"] = changes["label"].strip()
        if "readable_by" in changes:
            changes["readable_by"] = sorted(set(changes["readable_by"]))
        row = await self.repo.update(field_id, **changes)
        await self._event("updated", row)
        return view(row)

    async def _event(self, action: str, row: CustomFieldDefinition) -> None:
        await emit(
            self.session,
            f"contacts.custom_field.{action}",
            self.access.principal.tenant_id,
            {"field_id": str(row.id), "entity": row.entity, "key": row.key, "type": row.type},
            actor=self.access.actor,
        )
