"""Batch create / update / upsert of records: up to 100 items, one result per item.

The call is one transaction committed at the edge; every item runs in its own
savepoint, so an item that fails leaves nothing behind (no row, history or outbox
event) and does not undo its neighbours. Items are validated one by one with the
same schemas and rules as the single-record endpoints.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy.exc import DBAPIError, IntegrityError

from crm_contacts.records.service import RecordService
from crm_lib.http import ProblemError, problem_body
from crm_lib.telemetry import get_logger

log = get_logger("crm.contacts.batch")

MAX_BATCH = 100
Items = Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]
Action = Literal["created", "updated", "unchanged", "failed"]


class BatchCreate(msgspec.Struct, forbid_unknown_fields=True):
    #: Each item has the shape of the single create body.
    items: Items
    allow_duplicates: bool = False


class BatchUpdateItem(msgspec.Struct, forbid_unknown_fields=True):
    id: uuid.UUID
    #: Optional optimistic-concurrency check, like ``If-Match`` (412 when stale).
    version: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: The single update body (only the fields to change).
    changes: dict[str, Any] = msgspec.field(default_factory=dict)


class BatchUpdate(msgspec.Struct, forbid_unknown_fields=True):
    #: Each item: ``{"id": ..., "version": 3, "changes": {...}}``.
    items: Items


class BatchUpsert(msgspec.Struct, forbid_unknown_fields=True):
    #: The unique key to match on (contacts: ``email`` = the first email, or
    #: ``external_id``; companies: ``domain``).
    key: str
    #: Each item has the shape of the create body; on a match only the fields the
    #: item names are changed.
    items: Items
    allow_duplicates: bool = False


class BatchItemResult(msgspec.Struct, omit_defaults=True):
    index: int
    status: int
    action: Action
    id: uuid.UUID | None = None
    record: dict[str, Any] | None = None
    problem: dict[str, Any] | None = None


class BatchResult(msgspec.Struct):
    results: list[BatchItemResult]
    created: int
    updated: int
    unchanged: int
    failed: int


ItemOutcome = tuple[Action, Any]


def _validation_problem(exc: msgspec.ValidationError) -> dict[str, Any]:
    # msgspec says e.g. "Expected `str`, got `int` - at `$.first_name`".
    message = str(exc)
    _, found, where = message.rpartition(" - at `")
    field = where.rstrip("`").removeprefix("$").lstrip(".") if found else ""
    return problem_body(
        422,
        message,
        title="Validation failed",
        type_="https://errors.crm.example/validation",
        errors=[{"field": field or "body", "message": message}],
    )


def database_problem(exc: DBAPIError, entity: str, index: int) -> dict[str, Any]:
    """A clear problem for an item the database refused; never the database's own text
    (it quotes the values: emails, names). The SQLSTATE and constraint are logged."""
    orig = exc.orig
    sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    cause = getattr(orig, "__cause__", None)
    log.warning(
        "batch.item_refused_by_database",
        entity=entity,
        index=index,
        error=type(cause or orig).__name__,
        sqlstate=sqlstate or None,
        constraint=getattr(cause, "constraint_name", None),
    )
    if isinstance(exc, IntegrityError) or sqlstate.startswith("23"):
        # A unique key taken concurrently by another request, or a reference gone.
        return problem_body(
            409,
            "The record conflicts with one written meanwhile; read it again and retry.",
            title="Conflict",
            type_="https://errors.crm.example/conflict",
        )
    if sqlstate.startswith(("40", "55P03", "57014")):
        return problem_body(
            503,
            "The database was busy with a conflicting change; retry this item.",
            title="Service Unavailable",
            type_="https://errors.crm.example/retry",
        )
    return problem_body(
        422,
        "The database refused a value of this item (out of range or malformed).",
        title="Validation failed",
        type_="https://errors.crm.example/validation",
        errors=[{"field": "body", "message": "a value was refused by the database"}],
    )


class BatchRunner:
    """Runs batch items of one entity through its record service."""

    def __init__(
        self, svc: Any, create_type: type[msgspec.Struct], update_type: type[msgspec.Struct]
    ) -> None:
        self.svc: RecordService = svc
        self.create_type = create_type
        self.update_type = update_type

    async def _each(
        self, items: list[Any], run: Callable[[Any], Awaitable[ItemOutcome]]
    ) -> BatchResult:
        self.svc.access.require_write()
        results: list[BatchItemResult] = []
        rows: dict[int, Any] = {}
        for index, item in enumerate(items):
            try:
                async with self.svc.session.begin_nested():
                    action, row = await run(item)
            except ProblemError as exc:
                results.append(
                    BatchItemResult(index, exc.status_code, "failed", problem=exc.problem())
                )
                continue
            except msgspec.ValidationError as exc:
                results.append(
                    BatchItemResult(index, 422, "failed", problem=_validation_problem(exc))
                )
                continue
            except DBAPIError as exc:
                problem = database_problem(exc, self.svc.entity.name, index)
                results.append(BatchItemResult(index, problem["status"], "failed", problem=problem))
                continue
            rows[index] = row
            status = 201 if action == "created" else 200
            results.append(BatchItemResult(index, status, action, id=row.id))
        views = await self.svc.views(list(rows.values()))
        by_index = dict(zip(rows, views, strict=True))
        for result in results:
            if result.index in by_index:
                result.record = by_index[result.index]
        counts = {
            a: sum(1 for r in results if r.action == a)
            for a in ("created", "updated", "unchanged", "failed")
        }
        return BatchResult(results, **counts)

    async def create(self, body: BatchCreate) -> BatchResult:
        svc: Any = self.svc

        async def run(item: dict[str, Any]) -> ItemOutcome:
            data = msgspec.convert(item, self.create_type)
            return "created", await svc.create(data, allow_duplicate=body.allow_duplicates)

        return await self._each(body.items, run)

    async def _update(self, record_id: uuid.UUID, data: Any, version: int | None) -> ItemOutcome:
        svc: Any = self.svc
        # An int, not the row: the update refreshes the same identity-mapped object.
        before_version = (await svc.writable(record_id, version)).version
        row = await svc.update(record_id, data, version)
        return ("updated" if row.version != before_version else "unchanged"), row

    async def update(self, body: BatchUpdate) -> BatchResult:
        async def run(item: dict[str, Any]) -> ItemOutcome:
            entry = msgspec.convert(item, BatchUpdateItem)
            data = msgspec.convert(entry.changes, self.update_type)
            return await self._update(entry.id, data, entry.version)

        return await self._each(body.items, run)

    async def upsert(self, body: BatchUpsert) -> BatchResult:
        if body.key not in self.svc.upsert_keys:
            raise ProblemError(
                422,
                f"key must be one of {', '.join(self.svc.upsert_keys)}.",
                title="Validation failed",
                errors=[{"field": "key", "message": f"one of {', '.join(self.svc.upsert_keys)}"}],
            )
        svc: Any = self.svc

        async def run(item: dict[str, Any]) -> ItemOutcome:
            data = msgspec.convert(item, self.create_type)
            existing = await svc.find_by_key(body.key, data)
            if existing is None:
                return "created", await svc.create(data, allow_duplicate=body.allow_duplicates)
            if not svc.access.may_read(existing.owner_id):
                # Neither updated nor named: the caller only learns that the key is taken.
                raise ProblemError(
                    409,
                    f"A {svc.entity.name} with this {body.key} exists that you cannot see.",
                    title="Conflict",
                    type_="https://errors.crm.example/duplicate",
                    duplicates=[{"id": None, "reason": f"same {body.key}"}],
                )
            if not svc.access.may_write(existing.owner_id):
                raise ProblemError(
                    409,
                    f"A {svc.entity.name} with this {body.key} exists and you cannot change it.",
                    title="Conflict",
                    duplicates=[{"id": str(existing.id), "reason": f"same {body.key}"}],
                )
            changes = msgspec.convert(item, self.update_type)
            return await self._update(existing.id, changes, None)

        return await self._each(body.items, run)
