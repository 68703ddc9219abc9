"""Business rules shared by contacts and companies.

Visibility (``crm_contacts.access``) applies to every read and write: a record the
caller may not see is a 404, one they see but may not change a 403. Every change
is diffed into field history and announced with the changed fields; sensitive
custom fields are encrypted at rest and masked for roles without access.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.access import Access, forbidden
from crm_contacts.crypto import MASK, TenantCipher
from crm_contacts.fields.service import FieldService
from crm_contacts.fields.values import FieldErrors, FieldSpec, validate_values
from crm_contacts.records.query import (
    Column,
    ListQuery,
    RecordQueryBuilder,
    cursor_type,
    prefix_tsquery,
    search_terms,
)
from crm_contacts.records.repository import (
    RecordRepository,
    SearchWordRepository,
    keyset_bound,
    word_runs,
)
from crm_contacts.tags.repository import TagRepository
from crm_contacts.tags.service import TagService
from crm_lib.auth import FORBIDDEN_TYPE
from crm_lib.events import emit
from crm_lib.http import ProblemError, require_version
from crm_lib.pagination import Page

REDACTED = "[sensitive]"
#: How many matches of each kind (exact/prefix, fuzzy) a search ranks at most.
SEARCH_CANDIDATES = 1000
#: Fuzzy (typo) matches are looked for only when fewer exact/prefix ones were found.
FUZZY_BELOW = 1
#: A query word no dictionary word starts with (``search_words``) is corrected to at most
#: ``TYPO_CORRECTIONS`` words, chosen by edit distance among the words one edit away and
#: the ``TYPO_CANDIDATES`` most trigram-similar ones (similarity ≥ ``TYPO_SIMILARITY``).
TYPO_CORRECTIONS = 3
TYPO_CANDIDATES = 20
TYPO_SIMILARITY = 0.3


@dataclass(frozen=True)
class EntityDef:
    name: str  # contact | company
    model: Any
    columns: Mapping[str, Column]
    default_sort: str
    event_prefix: str  # contacts.contact
    #: Standard fields that history and events track.
    tracked: tuple[str, ...]
    #: Fields the API returns (``fields=`` picks among them).
    output_fields: tuple[str, ...]


@dataclass(frozen=True)
class RecordContext:
    """What record services need beyond the session: the caller and service config."""

    access: Access
    master_key: bytes | None
    word_similarity: float = 0.45
    duplicate_similarity: float = 0.7
    bulk_read_audit_rows: int = 200


def jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def unreadable_fields(
    access: Access, specs: Mapping[str, FieldSpec], keys: Iterable[str]
) -> list[str]:
    """The sensitive fields among ``keys`` the caller may not read (so may not write)."""
    out = []
    for key in keys:
        spec = specs.get(key)
        if (
            spec is not None
            and spec.sensitive
            and not access.may_read_sensitive(list(spec.readable_by))
        ):
            out.append(key)
    return out


def sensitive_write_refused(keys: list[str], prefix: str = "custom_fields.") -> ProblemError:
    """A write to a sensitive field the caller cannot read: refused whatever the value,
    so the answer never depends on what is stored (no equality or presence oracle)."""
    message = "a sensitive field your role cannot read cannot be written by it either"
    return ProblemError(
        403,
        "Your role cannot write the sensitive field(s) " + ", ".join(keys[:10]) + ".",
        type_=FORBIDDEN_TYPE,
        errors=[{"field": f"{prefix}{k}"[:200], "message": message} for k in keys[:50]],
    )


def field_problem(errors: list[dict[str, str]]) -> ProblemError:
    return ProblemError(
        422,
        "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]),
        title="Validation failed",
        errors=errors,
    )


class RecordService:
    entity: EntityDef
    #: Fields a batch upsert may match existing records on.
    upsert_keys: tuple[str, ...] = ()

    def __init__(self, session: AsyncSession, ctx: RecordContext) -> None:
        self.session = session
        self.ctx = ctx
        self.access = ctx.access
        self.repo = RecordRepository(session, self.entity.model)
        self.fields = FieldService(session, ctx.access)
        self.tags = TagService(session, ctx.access)
        self.cipher = TenantCipher(session, ctx.access.principal.tenant_id, ctx.master_key)
        self._specs: dict[str, FieldSpec] | None = None

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.access.principal.tenant_id

    async def specs(self) -> dict[str, FieldSpec]:
        if self._specs is None:
            self._specs = await self.fields.specs(self.entity.name)
        return self._specs

    # ------------------------------------------------------------------ reading
    async def visible(self, record_id: uuid.UUID, *, lock: bool = False) -> Any:
        row = await self.repo.get(record_id, lock=lock)
        if row is None or not self.access.may_read(row.owner_id):
            raise ProblemError(404, f"No such {self.entity.name}.")
        return row

    async def writable(self, record_id: uuid.UUID, if_match: int | None) -> Any:
        self.access.require_write()
        row = await self.visible(record_id, lock=True)
        if not self.access.may_write(row.owner_id):
            raise forbidden(f"You can see this {self.entity.name} but not change it.")
        require_version(if_match, row.version, self.entity.name)
        return row

    def visibility_filter(self) -> list[ColumnElement[bool]]:
        return self.repo.owned_by(self.access.readable_owners)

    async def views(self, rows: list[Any], fields: list[str] | None = None) -> list[dict[str, Any]]:
        """API shapes of rows: tag names resolved, sensitive values decrypted or masked."""
        tag_ids = sorted({t for row in rows for t in row.tag_ids})
        tags = await TagRepository(self.session).by_ids(tag_ids)
        specs = await self.specs()
        out = []
        for row in rows:
            item = self.base_view(row)
            item["tags"] = [{"id": str(t), "name": tags[t].name} for t in row.tag_ids if t in tags]
            custom = dict(row.custom_fields)
            for key, token in row.sensitive_fields.items():
                spec = specs.get(key)
                readable = spec is not None and self.access.may_read_sensitive(
                    list(spec.readable_by)
                )
                # Unreadable: not even decrypted; the mask tells only that a value exists.
                custom[key] = (
                    msgspec.json.decode(await self.cipher.decrypt(row.id, key, token))
                    if readable
                    else MASK
                )
            item["custom_fields"] = custom
            if fields:
                item = {k: v for k, v in item.items() if k in fields or k in ("id", "version")}
            out.append(item)
        return out

    async def view(self, row: Any) -> dict[str, Any]:
        return (await self.views([row]))[0]

    def base_view(self, row: Any) -> dict[str, Any]:
        return {
            name: jsonable(getattr(row, name))
            for name in self.entity.output_fields
            if name not in ("tags", "custom_fields")
        }

    def check_fields(self, fields: list[str] | None) -> list[str] | None:
        if fields is None:
            return None
        unknown = [f for f in fields if f not in self.entity.output_fields]
        if unknown:
            raise ProblemError(
                422,
                "Unknown field(s) in fields=: " + ", ".join(unknown[:10]),
                title="Validation failed",
                errors=[{"field": "fields", "message": "unknown: " + ", ".join(unknown[:10])}],
            )
        return fields

    async def audit_bulk_read(self, query: ListQuery, returned: int) -> None:
        """Large list pages go to the access audit: who read how many records, asking what."""
        if returned < self.ctx.bulk_read_audit_rows:
            return
        await self.repo.audit(
            actor=self.access.actor,
            action="bulk_read",
            entity=self.entity.name,
            record_count=returned,
            details={
                "filters": query.to_filters_dict(),
                "sort": query.sort,
                "fields": query.fields,
                "continued": query.cursor is not None,
            },
        )

    async def check_query(self, query: ListQuery) -> None:
        """Compile a stored query's filters, sort and fields without running it (422 if bad)."""
        self.check_fields(query.fields)
        builder = RecordQueryBuilder(
            self.entity.model,
            self.entity.columns,
            await self.specs(),
            self.entity.default_sort,
            self.access.user_id,
        )
        for name, op, raw in query.filters:
            builder.condition(name, op, raw)
        builder.sort_expr(query.sort)

    async def page(self, query: ListQuery) -> Page[dict[str, Any]]:
        fields = self.check_fields(query.fields)
        builder = RecordQueryBuilder(
            self.entity.model,
            self.entity.columns,
            await self.specs(),
            self.entity.default_sort,
            self.access.user_id,
        )
        where = self.visibility_filter()
        where += [builder.condition(f, op, raw) for f, op, raw in query.filters]
        where += await self.tag_conditions(query)
        if query.q:
            terms = search_terms(query.q)
            if not terms:
                return Page([], None)
            condition, rank = await self.search(terms, list(where))
            where.append(condition)
            descending, expr = True, rank
        else:
            _name, expr, descending = builder.sort_expr(query.sort)
            where += self.keyset_bound(expr, descending, query.cursor)
        order, after = builder.page(expr, descending, query.cursor, cursor_type(expr))
        extra = [expr.label("sort_value")]
        rows = await self.repo.page([*where, after], order, query.limit + 1, extra)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        data = await self.views([r[0] for r in rows], fields)
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = builder.next_cursor(last.sort_value, last[0].id)
        return Page(data, next_cursor)

    @staticmethod
    def keyset_bound(
        expr: ColumnElement[Any], descending: bool, cursor: str | None
    ) -> list[ColumnElement[bool]]:
        """``expr <= v`` (``>=`` ascending) after a cursor (``records.repository``)."""
        return keyset_bound(expr, descending, cursor)

    async def search(
        self, terms: list[str], where: list[ColumnElement[bool]]
    ) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
        """Exact/prefix matches first, then typo-tolerant ones, ranked.

        An exact/prefix match is every word as a prefix in the full-text index
        (``search_vector``; companies: the phrase as a substring). Fuzzy matches are
        looked for only when there were fewer than ``FUZZY_BELOW`` exact/prefix ones
        (visibility and filters applied). Contacts: each query word that no word of the
        tenant's search dictionary starts with is corrected to its closest dictionary
        words (``typo_plan``), and the same full-text index answers "the word or one of
        its corrections" for every word. A trigram word similarity over ``search_text``
        is the fallback for words with digits (digits inside a phone number, a numbered
        email) and for words the dictionary has nothing close to (companies: always).

        Each kind collects at most ``SEARCH_CANDIDATES`` records; only those are ranked:
        2 for an exact/prefix match, plus how close the matched corrections are to the
        words typed (contacts' dictionary path: 1 minus edit distance over length, averaged
        over the words), plus a tenth of the word similarity of the query to the record's
        text as the tie-breaker: exact ones first, then the likeliest intended words.
        A common three-letter prefix matches a tenth of a large table, and ranking all of
        it would take seconds.
        """
        plan: TypoPlan | None = None
        if getattr(self.entity.model, "search_vector", None) is not None:
            plan = await self.typo_plan(terms)
        need_trigram = plan is None or plan.need_trigram
        if need_trigram:
            await self.repo.set_word_similarity_threshold(self.ctx.word_similarity)
        return self.repo.search_condition(
            terms,
            prefix_tsquery(terms),
            plan.groups if plan is not None else [],
            plan.tsquery() if plan is not None and plan.groups else None,
            need_trigram=need_trigram,
            where=where,
            candidates=SEARCH_CANDIDATES,
            fuzzy_below=FUZZY_BELOW,
        )

    async def typo_plan(self, terms: list[str]) -> TypoPlan:
        """How the fuzzy kind looks for ``terms`` (contacts).

        Each query word is split into the words the dictionary holds (``typo_pieces``).
        A piece no dictionary word starts with gets candidates: the ``TYPO_CANDIDATES``
        dictionary words most trigram-similar to it (≥ ``TYPO_SIMILARITY``) and the
        dictionary words one edit away (letters swapped, dropped, added or replaced:
        trigrams miss a swap in a short word). The ``TYPO_CORRECTIONS`` with the smallest
        ``typo_distance`` (edit distance; 1 for a word containing the piece) become its
        alternatives, scored by closeness. Pieces with digits, or with no candidate at
        all, need the trigram fallback instead; no groups when the full-text query would
        be the exact one.
        """
        pieces = [p for term in terms for p in typo_pieces(term)]
        if not pieces or any(c in "0123456789" for p in pieces for c in p):
            return TypoPlan([], True)
        words = SearchWordRepository(self.session)
        lookups = sorted({p for p in pieces if len(p) >= 3})
        near = await words.closest(lookups, TYPO_SIMILARITY, TYPO_CANDIDATES)
        edits = {p: one_edit(p) for p in lookups if near.get(p) is not None and len(p) <= 12}
        found = await words.existing(v for variants in edits.values() for v in variants)
        groups: list[list[tuple[str, float]]] = []
        need_trigram = corrected = False
        for piece in pieces:
            candidates = set(near.get(piece) or []) | (edits.get(piece, set()) & found)
            candidates.discard(piece)
            if near.get(piece) is not None and not candidates:
                need_trigram = True
            scored = sorted(
                (typo_distance(piece, w), -trigram_similarity(piece, w), w) for w in candidates
            )
            best = scored[0][0] if scored else 0
            alternatives = [(piece, 1.0)] + [
                (w, round(1.0 - d / max(len(piece), len(w)), 3))
                for d, _sim, w in scored[:TYPO_CORRECTIONS]
                if d <= best + 1
            ]
            corrected = corrected or len(alternatives) > 1
            groups.append(alternatives)
        if not corrected and pieces == terms:
            return TypoPlan([], need_trigram)
        return TypoPlan(groups, need_trigram)

    async def tag_conditions(self, query: ListQuery) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if query.tags_all:
            ids = await self.tag_ids_for(query.tags_all)
            condition = self.repo.tags_condition(ids, any_of=False)
            if ids is None:
                return [condition]
            out.append(condition)
        if query.tags_any:
            ids = await self.tag_ids_for(query.tags_any, any_of=True)
            condition = self.repo.tags_condition(ids, any_of=True)
            if ids is None:
                return [condition]
            out.append(condition)
        return out

    async def tag_ids_for(self, refs: list[str], any_of: bool = False) -> list[uuid.UUID] | None:
        """Tag ids for names or ids; None when a required tag does not exist."""
        ids: list[uuid.UUID] = []
        names: list[str] = []
        for ref in refs:
            try:
                ids.append(uuid.UUID(ref))
            except ValueError:
                names.append(ref.strip().lower())
        found = await TagRepository(self.session).by_lower_names(names)
        if not any_of and len(found) < len(set(names)):
            return None
        ids += [t.id for t in found.values()]
        return ids or None

    # ------------------------------------------------------------------ writing helpers
    async def owner_for_create(self, requested: uuid.UUID | None) -> uuid.UUID | None:
        me = self.access.user_id
        if requested is None:
            return me
        if requested != me and not self.access.may_reassign():
            raise forbidden("Only owners, admins and sales managers assign records to others.")
        await self.check_owner(requested)
        return requested

    async def check_owner(self, owner_id: uuid.UUID | None) -> None:
        if owner_id is not None and not await self.repo.active_member(owner_id):
            raise ProblemError(
                422,
                "owner_id must be an active user of this tenant.",
                title="Validation failed",
                errors=[{"field": "owner_id", "message": "not an active user of this tenant"}],
            )

    async def custom_values(
        self,
        record_id: uuid.UUID,
        values: Mapping[str, Any],
        *,
        creating: bool,
        current: Mapping[str, Any] | None = None,
        current_sensitive: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(custom_fields, sensitive_fields) after validating and applying ``values``.

        A sensitive field the caller cannot read is refused (403) before anything is
        looked at. For one they can read, writing the value already stored keeps its
        ciphertext, so a write that changes nothing keeps the record's version.
        """
        specs = await self.specs()
        refused = unreadable_fields(self.access, specs, values)
        if refused:
            raise sensitive_write_refused(refused)
        try:
            clean = validate_values(specs, values, creating=creating)
        except FieldErrors as exc:
            raise field_problem(exc.errors) from exc
        custom = dict(current or {})
        sensitive = dict(current_sensitive or {})
        for key, value in clean.items():
            target = sensitive if specs[key].sensitive else custom
            if value is None:
                target.pop(key, None)
            elif specs[key].sensitive:
                plain = msgspec.json.encode(value).decode()
                token = sensitive.get(key)
                if token is None or await self.cipher.decrypt(record_id, key, token) != plain:
                    sensitive[key] = await self.cipher.encrypt(record_id, key, plain)
            else:
                custom[key] = value
        return custom, sensitive

    def snapshot(self, row: Any) -> dict[str, Any]:
        """Tracked values of a row (sensitive values redacted) for diffs."""
        snap = {name: jsonable(getattr(row, name)) for name in self.entity.tracked}
        snap["tag_ids"] = sorted(str(t) for t in row.tag_ids)
        for key, value in row.custom_fields.items():
            snap[f"custom_fields.{key}"] = value
        for key, token in row.sensitive_fields.items():
            snap[f"custom_fields.{key}"] = f"{REDACTED}:{token[-8:]}"
        return snap

    @staticmethod
    def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        changes = {}
        for key in sorted(set(before) | set(after)):
            old, new = before.get(key), after.get(key)
            if old != new:
                changes[key] = {"from": old, "to": new}
        return changes

    async def record_history(
        self, record_id: uuid.UUID, changes: Mapping[str, Mapping[str, Any]], reason: str
    ) -> None:
        rows = []
        for key, change in changes.items():
            old, new = change["from"], change["to"]
            if key.startswith("custom_fields.") and any(
                isinstance(v, str) and v.startswith(REDACTED) for v in (old, new)
            ):
                old = REDACTED if old is not None else None
                new = REDACTED if new is not None else None
            rows.append(
                {
                    "entity": self.entity.name,
                    "record_id": record_id,
                    "field": key[:100],
                    "old_value": old,
                    "new_value": new,
                    "reason": reason,
                    "actor": self.access.actor,
                }
            )
        await self.repo.add_changes(rows)

    @staticmethod
    def public_changes(changes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Changed fields for events: sensitive values never leave the service."""
        out = {}
        for key, change in changes.items():
            if any(isinstance(v, str) and v.startswith(REDACTED) for v in change.values()):
                out[key] = {"from": REDACTED, "to": REDACTED}
            else:
                out[key] = dict(change)
        return out

    async def announce(self, action: str, row: Any, data: dict[str, Any] | None = None) -> None:
        await emit(
            self.session,
            f"{self.entity.event_prefix}.{action}",
            self.tenant_id,
            {
                f"{self.entity.name}_id": str(row.id),
                "owner_id": str(row.owner_id) if row.owner_id else None,
                "version": row.version,
                **(data or {}),
            },
            actor=self.access.actor,
        )

    @staticmethod
    def differs(row: Any, values: Mapping[str, Any]) -> bool:
        """Would writing ``values`` change anything a user can see?"""
        for key, new in values.items():
            if key in ("updated_by", "search_text"):
                continue
            old = getattr(row, key)
            if key == "tag_ids":
                if sorted(map(str, old)) != sorted(map(str, new)):
                    return True
            elif jsonable(old) != jsonable(new):
                return True
        return False

    def key_value(self, key: str, data: Any) -> Any:
        """The normalised value of upsert key ``key`` in a create payload."""
        return getattr(data, key, None)

    async def find_by_key(self, key: str, data: Any) -> Any | None:
        value = self.key_value(key, data)
        if value is None:
            raise field_problem([{"field": key, "message": f"upsert on {key} needs a value"}])
        return await self.repo.find_live_by(key, value)

    async def apply_update(
        self, row: Any, values: dict[str, Any], reason: str = "update"
    ) -> tuple[Any, dict[str, Any]]:
        """Write ``values`` to ``row``; history and the updated event if anything changed."""
        if not self.differs(row, values):
            # A no-op write keeps its version, so replays and idempotent upserts stay quiet.
            return row, {}
        before = self.snapshot(row)
        values["updated_by"] = self.access.actor
        updated = await self.repo.update(row.id, values)
        changes = self.diff(before, self.snapshot(updated))
        if changes:
            await self.record_history(row.id, changes, reason)
            await self.announce("updated", updated, {"changes": self.public_changes(changes)})
        return updated, changes

    async def delete(self, record_id: uuid.UUID, if_match: int | None) -> None:
        row = await self.writable(record_id, if_match)
        if not self.access.may_delete(row.owner_id):
            raise forbidden(f"Your role cannot delete this {self.entity.name}.")
        await self.repo.soft_delete(row.id, {"updated_by": self.access.actor})
        await self.record_history(row.id, {"deleted": {"from": False, "to": True}}, "delete")
        await self.announce("deleted", row)

    async def common_update_values(self, row: Any, given: Mapping[str, Any]) -> dict[str, Any]:
        """The update values every record entity shares: owner, tags, custom fields."""
        values: dict[str, Any] = {}
        if "owner_id" in given and given["owner_id"] != row.owner_id:
            if not self.access.may_reassign():
                raise ProblemError(403, "Only owners, admins and sales managers reassign records.")
            await self.check_owner(given["owner_id"])
            values["owner_id"] = given["owner_id"]
        if "tags" in given:
            values["tag_ids"] = await self.tags.resolve(given["tags"])
        if "custom_fields" in given:
            values["custom_fields"], values["sensitive_fields"] = await self.custom_values(
                row.id,
                given["custom_fields"],
                creating=False,
                current=row.custom_fields,
                current_sensitive=row.sensitive_fields,
            )
        return values

    async def _writable_rows(self, ids: Iterable[uuid.UUID]) -> tuple[list[Any], list[uuid.UUID]]:
        """The records (locked, id order) the caller may change, and the ids skipped."""
        wanted = sorted(set(ids))
        rows = {r.id: r for r in await self.repo.get_many(wanted, lock=True)}
        writable, skipped = [], []
        for record_id in wanted:
            row = rows.get(record_id)
            if row is None or not self.access.may_write(row.owner_id):
                skipped.append(record_id)
            else:
                writable.append(row)
        return writable, skipped

    async def bulk_tags(
        self, ids: Iterable[uuid.UUID], names: list[str], action: str
    ) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        self.access.require_write()
        tag_ids = (
            await self.tags.resolve(names)
            if action == "add"
            else (await self.tag_ids_for(names, any_of=True) or [])
        )
        rows, skipped = await self._writable_rows(ids)
        for row in rows:
            current = list(row.tag_ids)
            if action == "add":
                new = current + [t for t in tag_ids if t not in current]
            else:
                new = [t for t in current if t not in tag_ids]
            if new != current:
                await self.apply_update(row, {"tag_ids": new}, reason="bulk_tag")
        return [row.id for row in rows], skipped

    async def reassign(
        self, ids: Iterable[uuid.UUID], owner_id: uuid.UUID
    ) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        if not self.access.may_reassign():
            raise forbidden("Only owners, admins and sales managers reassign records.")
        await self.check_owner(owner_id)
        rows, skipped = await self._writable_rows(ids)
        for row in rows:
            if row.owner_id != owner_id:
                await self.apply_update(row, {"owner_id": owner_id}, reason="reassign")
        updated = [row.id for row in rows]
        if updated:
            await self.repo.audit(
                actor=self.access.actor,
                action="reassign",
                entity=self.entity.name,
                record_count=len(updated),
                details={"owner_id": str(owner_id), "ids": [str(i) for i in updated[:1000]]},
            )
        return updated, skipped


@dataclass(frozen=True)
class TypoPlan:
    """Per query piece its alternatives (the piece first, then corrections) with a
    closeness score in (0, 1]; and whether the trigram fallback is needed too."""

    groups: list[list[tuple[str, float]]]
    need_trigram: bool

    def tsquery(self) -> str:
        """Every piece, as itself or one of its corrections, as prefixes."""
        return " & ".join(
            "(" + " | ".join(f"'{w}':*" for w, _score in group) + ")" for group in self.groups
        )


_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")


def one_edit(word: str) -> set[str]:
    """Strings one edit from ``word`` (a letter dropped, two adjacent ones swapped, one
    replaced or one added; letters a-z and the word's own), at least 3 long."""
    letters = _LETTERS | set(word)
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in letters}
    out |= {a + c + b for a, b in splits for c in letters}
    out.discard(word)
    return {w for w in out if len(w) >= 3}


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: a dropped, added or replaced letter, or two
    adjacent letters swapped, each cost 1."""
    before: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], before[j - 2] + 1)
        before, prev = prev, cur
    return prev[len(b)]


def typo_distance(piece: str, word: str) -> int:
    """How far ``word`` is from a typed ``piece``: its edit distance, but 1 when the piece
    (4+ letters) is part of the word (a partial word: "ilton" for "hamilton")."""
    if len(piece) >= 4 and piece in word:
        return 1
    return edit_distance(piece, word)


def _trigrams(word: str) -> set[str]:
    padded = f"  {word} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def trigram_similarity(a: str, b: str) -> float:
    """pg_trgm's ``similarity`` of two single words (shared / all padded trigrams)."""
    ta, tb = _trigrams(a), _trigrams(b)
    return len(ta & tb) / len(ta | tb) if ta or tb else 0.0


def typo_pieces(term: str) -> list[str]:
    """The dictionary-sized words of one query word, in the shape ``search_text`` holds them.

    Letters/digits runs (``a.b-c`` → a, b, c). An email address gives its local part's runs
    and the first label of its domain (``search_text`` has ``marnubra.com`` as one host
    lexeme, which ``'marnubra':*`` matches and ``'com'`` would not); likewise a bare host
    (``acme.com``, ``example.co.uk``: a last label of at most three letters) gives its
    first label.
    """
    if "@" in term:
        local, _, domain = term.partition("@")
        return word_runs(local) + word_runs(domain)[:1]
    runs = word_runs(term)
    if "." in term and len(runs) > 1 and len(runs[-1]) <= 3 and runs[-1].isalpha():
        return runs[:1]
    return runs
