"""Merging contacts (or companies): preview, merge, undo.

Rules:
* The caller must see every involved record (else 404) and be allowed to change
  each of them (else 403); a different owner for the merged record is a reassign.
* Field by field the merged record keeps the chosen record's value (``choices``),
  by default the winner's, or the first loser's when the winner has none. Emails,
  phones and tags are unioned (the chosen primary first); company links are
  unioned; activities (and for companies, contacts and their links) move to the
  winner. Sensitive custom values are re-encrypted for the winner.
* Losers are soft-deleted with ``merged_into_id``; history rows on every record,
  one access-audit row, and ``contacts.<entity>.merged`` through the outbox.
* A preview runs the very same merge in a savepoint and rolls it back.
* Undo (within ``merge_undo_hours``) restores the losers, the winner's pre-merge
  values and every re-pointed row; it refuses (409) once the winner changed after
  the merge, so no later edit is silently lost.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_contacts.access import forbidden
from crm_contacts.companies.service import CompanyService, company_search_text
from crm_contacts.contacts.service import ContactService, row_search_text, search_text
from crm_contacts.merges.repository import MergeRepository
from crm_contacts.merges.schemas import MergeRequest
from crm_contacts.models import Merge
from crm_contacts.records.service import RecordContext, RecordService, jsonable
from crm_lib.http import ProblemError, require_version

CHOOSABLE: dict[str, tuple[str, ...]] = {
    "contact": (
        "first_name",
        "last_name",
        "title",
        "company_id",
        "address",
        "source",
        "lifecycle_stage",
        "owner_id",
        "external_id",
        "consent",
    ),
    "company": ("name", "domain", "industry", "size", "address", "owner_id"),
}
#: The winner's columns a merge may change (what undo puts back).
RESTORED: dict[str, tuple[str, ...]] = {
    "contact": (
        *CHOOSABLE["contact"],
        "emails",
        "email",
        "phones",
        "phone",
        "tag_ids",
        "custom_fields",
        "sensitive_fields",
        "search_text",
    ),
    "company": (
        *CHOOSABLE["company"],
        "tag_ids",
        "custom_fields",
        "sensitive_fields",
        "search_text",
    ),
}
_UUID_COLUMNS = frozenset({"owner_id", "company_id"})


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def _invalid(field: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        f"{field}: {message}",
        title="Validation failed",
        errors=[{"field": field, "message": message}],
    )


def _decode_restore(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key in _UUID_COLUMNS & out.keys():
        out[key] = uuid.UUID(out[key]) if out[key] else None
    if "tag_ids" in out:
        out["tag_ids"] = [uuid.UUID(t) for t in out["tag_ids"]]
    return out


def _union(lists: list[list[dict[str, Any]]], key: str) -> list[dict[str, Any]]:
    seen: set[Any] = set()
    out = []
    for entries in lists:
        for entry in entries:
            if entry.get(key) not in seen:
                seen.add(entry.get(key))
                out.append(entry)
    return out


class MergeService:
    def __init__(self, session: AsyncSession, ctx: RecordContext, entity: str = "contact") -> None:
        self.session = session
        self.ctx = ctx
        self.access = ctx.access
        self.repo = MergeRepository(session)
        self.entity = entity
        self.records: RecordService = (
            ContactService(session, ctx) if entity == "contact" else CompanyService(session, ctx)
        )

    def for_entity(self, entity: str) -> MergeService:
        return self if entity == self.entity else MergeService(self.session, self.ctx, entity)

    @property
    def model(self) -> Any:
        return self.records.entity.model

    # ------------------------------------------------------------------ preview / merge
    async def preview(self, req: MergeRequest, if_match: int | None) -> dict[str, Any]:
        savepoint = await self.session.begin_nested()
        try:
            return await self._merge(req, if_match, None, 0)
        finally:
            await savepoint.rollback()

    async def merge(
        self, req: MergeRequest, if_match: int | None, undo_hours: int
    ) -> dict[str, Any]:
        return await self._merge(req, if_match, uuid.uuid4(), undo_hours)

    async def _load(self, req: MergeRequest, if_match: int | None) -> tuple[Any, list[Any]]:
        if req.winner_id in req.loser_ids:
            raise _invalid("loser_ids", "must not contain the winner")
        if len(set(req.loser_ids)) != len(req.loser_ids):
            raise _invalid("loser_ids", "lists a record twice")
        self.access.require_write()
        ids = [req.winner_id, *req.loser_ids]
        rows = {r.id: r for r in await self.records.repo.get_many(sorted(ids), lock=True)}
        name = self.records.entity.name
        for record_id in ids:
            row = rows.get(record_id)
            if row is None or not self.access.may_read(row.owner_id):
                raise ProblemError(404, f"No such {name}: {record_id}.")
        for record_id in ids:
            if not self.access.may_write(rows[record_id].owner_id):
                raise forbidden(f"You can see {name} {record_id} but not change it.")
        # Merging removes the losers: only those allowed to delete them may merge them away.
        for record_id in req.loser_ids:
            if not self.access.may_delete(rows[record_id].owner_id):
                raise forbidden(
                    f"Your role cannot delete {name} {record_id}, so it cannot merge it away."
                )
        winner = rows[req.winner_id]
        require_version(if_match, winner.version, f"winning {name}")
        return winner, [rows[i] for i in req.loser_ids]

    def _choose(
        self, field: str, records: list[Any], choices: dict[str, uuid.UUID], value: Any
    ) -> Any:
        if field in choices:
            return next(r for r in records if r.id == choices[field])
        return next((r for r in records if not _empty(value(r))), records[0])

    async def _merge(
        self, req: MergeRequest, if_match: int | None, merge_id: uuid.UUID | None, hours: int
    ) -> dict[str, Any]:
        winner, losers = await self._load(req, if_match)
        records = [winner, *losers]
        ids = {r.id for r in records}
        views = {r.id: v for r, v in zip(records, await self.records.views(records), strict=True)}
        custom_keys = list(
            dict.fromkeys(k for r in records for k in (*r.custom_fields, *r.sensitive_fields))
        )
        allowed = set(CHOOSABLE[self.entity]) | {f"custom_fields.{k}" for k in custom_keys}
        if self.entity == "contact":
            allowed |= {"email", "phone"}
        for key, record_id in req.choices.items():
            if key not in allowed:
                raise _invalid(f"choices.{key}", "not a field of these records")
            if record_id not in ids:
                raise _invalid(f"choices.{key}", "names no record of this merge")

        fields: list[dict[str, Any]] = []
        values: dict[str, Any] = {}

        def describe(field: str, chosen: Any, shown: Any) -> None:
            fields.append(
                {
                    "field": field,
                    "candidates": [{"record_id": str(r.id), "value": shown(r)} for r in records],
                    "chosen_from": str(chosen.id),
                    "value": shown(chosen),
                }
            )

        for field in CHOOSABLE[self.entity]:
            chosen = self._choose(field, records, req.choices, lambda r, f=field: getattr(r, f))
            values[field] = getattr(chosen, field)
            describe(field, chosen, lambda r, f=field: views[r.id].get(f))

        custom = dict(winner.custom_fields)
        sensitive = dict(winner.sensitive_fields)
        for key in custom_keys:

            def stored(r: Any, k: str = key) -> Any:
                return r.sensitive_fields.get(k, r.custom_fields.get(k))

            chosen = self._choose(f"custom_fields.{key}", records, req.choices, stored)
            custom.pop(key, None)
            sensitive.pop(key, None)
            if key in chosen.sensitive_fields:
                token = chosen.sensitive_fields[key]
                if chosen.id != winner.id:
                    # A ciphertext is bound to its record: re-encrypt for the winner. (The
                    # tenant's data key exists already: the loser's value was sealed with it.)
                    plain = await self.records.cipher.decrypt(chosen.id, key, token)
                    token = await self.records.cipher.encrypt(winner.id, key, plain)
                sensitive[key] = token
            elif key in chosen.custom_fields:
                custom[key] = chosen.custom_fields[key]
            describe(
                f"custom_fields.{key}",
                chosen,
                lambda r, k=key: views[r.id]["custom_fields"].get(k),
            )
        values["custom_fields"], values["sensitive_fields"] = custom, sensitive
        values["tag_ids"] = list(dict.fromkeys(t for r in records for t in r.tag_ids))
        unions: dict[str, Any] = {
            "tags": sorted({t["name"] for r in records for t in views[r.id]["tags"]})
        }
        if self.entity == "contact":
            for field, key in (("email", "address"), ("phone", "number")):
                plural = f"{field}s"
                first = self._choose(field, records, req.choices, lambda r, f=field: getattr(r, f))
                merged = _union(
                    [getattr(first, plural)] + [getattr(r, plural) for r in records], key
                )
                values[plural] = merged
                values[field] = merged[0][key] if merged else None
                unions[plural] = merged
                describe(field, first, lambda r, f=field: views[r.id].get(f))

        if values["owner_id"] != winner.owner_id:
            if not self.access.may_reassign():
                raise forbidden("Only owners, admins and sales managers give records a new owner.")
            await self.records.check_owner(values["owner_id"])

        result = await self._apply(winner, losers, values, merge_id, req, hours)
        return {
            "merge_id": str(merge_id) if merge_id else None,
            "entity": self.entity,
            "winner_id": str(winner.id),
            "loser_ids": [str(r.id) for r in losers],
            "fields": fields,
            "unions": unions,
            **result,
        }

    async def _apply(
        self,
        winner: Any,
        losers: list[Any],
        values: dict[str, Any],
        merge_id: uuid.UUID | None,
        req: MergeRequest,
        hours: int,
    ) -> dict[str, Any]:
        svc, repo, actor = self.records, self.repo, self.access.actor
        loser_ids = [r.id for r in losers]
        if self.entity == "contact":
            company_name = None
            if values["company_id"] is not None:
                company_name = await repo.live_company_name(values["company_id"])
                if company_name is None:
                    raise _invalid("choices.company_id", "the chosen company no longer exists")
            values["search_text"] = search_text(values, company_name)
        else:
            values["search_text"] = company_search_text(values["name"], values["domain"])
        restore = {c: jsonable(getattr(winner, c)) for c in RESTORED[self.entity]}

        # Losers first: their unique keys (external id) are free once they are merged away.
        for loser in losers:
            await svc.repo.soft_delete(loser.id, {"merged_into_id": winner.id, "updated_by": actor})
            await svc.record_history(
                loser.id, {"merged_into": {"from": None, "to": str(winner.id)}}, "merge"
            )
        before = svc.snapshot(winner)
        updated = await svc.repo.update(winner.id, {**values, "updated_by": actor})
        changes = svc.diff(before, svc.snapshot(updated))
        await svc.record_history(
            winner.id,
            {**changes, "merged_from": {"from": None, "to": [str(i) for i in loser_ids]}},
            "merge",
        )

        snapshot: dict[str, Any] = {"winner": restore}
        repointed: dict[str, int] = {}
        column = f"{self.entity}_id"
        snapshot["activities"] = await repo.repoint_activities(column, loser_ids, winner.id)
        repointed["activities"] = len(snapshot["activities"])
        if self.entity == "contact":
            snapshot["links_before"] = await repo.contact_links(winner.id)
            await repo.copy_links(loser_ids, winner.id)
            if updated.company_id != winner_company(restore):
                assert isinstance(self.records, ContactService)
                await self.records.set_primary_link(winner.id, updated.company_id)
            links = await repo.contact_links(winner.id)
            repointed["company_links"] = len(links) - len(snapshot["links_before"])
        else:
            snapshot["contacts"] = await repo.repoint_contacts(loser_ids, winner.id)
            snapshot["links"] = await repo.merge_company_links(loser_ids, winner.id)
            await self._refresh_contact_search([uuid.UUID(c) for c, _ in snapshot["contacts"]])
            repointed["contacts"] = len(snapshot["contacts"])
            repointed["contact_links"] = len(snapshot["links"]["removed"])

        view = await svc.view(updated)
        out: dict[str, Any] = {"changes": svc.public_changes(changes), "repointed": repointed}
        if merge_id is not None:
            await repo.insert(
                {
                    "id": merge_id,
                    "entity": self.entity,
                    "winner_id": winner.id,
                    "loser_ids": loser_ids,
                    "choices": {k: str(v) for k, v in req.choices.items()},
                    "changed_fields": sorted(changes),
                    "snapshot": snapshot,
                    "winner_version": updated.version,
                    "actor": actor,
                }
            )
            await svc.repo.audit(
                actor=actor,
                action="merge",
                entity=self.entity,
                record_count=1 + len(loser_ids),
                details={
                    "merge_id": str(merge_id),
                    "winner_id": str(winner.id),
                    "loser_ids": [str(i) for i in loser_ids],
                },
            )
            await svc.announce(
                "merged",
                updated,
                {
                    "merge_id": str(merge_id),
                    "winner_id": str(winner.id),
                    "loser_ids": [str(i) for i in loser_ids],
                    "changes": out["changes"],
                },
            )
            out["status"] = "merged"
            out["undo_until"] = (datetime.now(UTC) + timedelta(hours=hours)).isoformat()
        out["result"] = view
        return out

    async def _refresh_contact_search(self, contact_ids: list[uuid.UUID]) -> None:
        """Contacts search by their company's name: re-derive it after re-pointing."""
        if not contact_ids:
            return
        contacts = await self.repo.contacts_of(contact_ids)
        names = await self.repo.company_names([c.company_id for c in contacts if c.company_id])
        for contact in contacts:
            if contact.erased_at is not None:
                continue
            company = names.get(contact.company_id) if contact.company_id else None
            await self.repo.set_search_text(contact.id, row_search_text(contact, company))

    # ------------------------------------------------------------------ reading
    async def _visible_merge(self, merge_id: uuid.UUID, *, lock: bool = False) -> Merge:
        merge = await self.repo.get(merge_id, lock=lock)
        if merge is None:
            raise ProblemError(404, "No such merge.")
        svc = self.for_entity(merge.entity)
        rows = await svc.repo.records(svc.model, [merge.winner_id])
        if not rows or not self.access.may_read(rows[0].owner_id):
            raise ProblemError(404, "No such merge.")
        return merge

    async def get(self, merge_id: uuid.UUID, undo_hours: int) -> dict[str, Any]:
        return merge_view(await self._visible_merge(merge_id), undo_hours)

    async def of_record(self, record_id: uuid.UUID, undo_hours: int) -> list[dict[str, Any]]:
        """Where did a record go? Merges it took part in whose winner the caller sees."""
        out = []
        for merge in await self.repo.of_record(record_id):
            svc = self.for_entity(merge.entity)
            rows = await svc.repo.records(svc.model, [merge.winner_id])
            if rows and self.access.may_read(rows[0].owner_id):
                out.append(merge_view(merge, undo_hours))
        return out

    # ------------------------------------------------------------------ undo
    async def undo(self, merge_id: uuid.UUID, undo_hours: int) -> dict[str, Any]:
        merge = await self._visible_merge(merge_id, lock=True)
        return await self.for_entity(merge.entity)._undo(merge, undo_hours)

    async def _undo(self, merge: Merge, undo_hours: int) -> dict[str, Any]:
        svc, repo, actor = self.records, self.repo, self.access.actor
        name = svc.entity.name
        self.access.require_write()
        ids = [merge.winner_id, *merge.loser_ids]
        rows = {r.id: r for r in await repo.records(self.model, sorted(ids), lock=True)}
        for record_id in ids:
            row = rows.get(record_id)
            if row is None or not self.access.may_read(row.owner_id):
                raise ProblemError(404, "No such merge.")
            if not self.access.may_write(row.owner_id):
                raise forbidden(f"You can see {name} {record_id} but not change it.")
        if merge.status != "merged":
            raise _conflict(f"This merge cannot be undone: it is {merge.status}.")
        if merge.created_at + timedelta(hours=undo_hours) < datetime.now(UTC):
            raise _conflict(f"The undo window ({undo_hours} hours) of this merge has passed.")
        winner = rows[merge.winner_id]
        if winner.deleted_at is not None:
            raise _conflict(f"The winning {name} was deleted after the merge.")
        if winner.version != merge.winner_version:
            raise _conflict(
                f"The winning {name} changed after the merge (version {merge.winner_version} "
                f"→ {winner.version}); undoing would lose those changes."
            )
        losers = [rows[i] for i in merge.loser_ids]
        for loser in losers:
            if loser.merged_into_id != winner.id or getattr(loser, "erased_at", None):
                raise _conflict(f"{name.title()} {loser.id} is no longer merged into the winner.")

        snapshot = merge.snapshot
        before = svc.snapshot(winner)
        restored = await svc.repo.update(
            winner.id, {**_decode_restore(snapshot["winner"]), "updated_by": actor}
        )
        changes = svc.diff(before, svc.snapshot(restored))
        await svc.record_history(
            winner.id,
            {**changes, "merged_from": {"from": [str(i) for i in merge.loser_ids], "to": None}},
            "merge_undo",
        )
        for loser in losers:
            await svc.repo.update(
                loser.id, {"deleted_at": None, "merged_into_id": None, "updated_by": actor}
            )
            await svc.record_history(
                loser.id, {"merged_into": {"from": str(winner.id), "to": None}}, "merge_undo"
            )
        column = f"{self.entity}_id"
        await repo.restore_activities(column, snapshot.get("activities", []), winner.id)
        if self.entity == "contact":
            await repo.restore_contact_links(winner.id, snapshot.get("links_before", []))
        else:
            await repo.restore_company_links(snapshot.get("links", {}), winner.id)
            moved = snapshot.get("contacts", [])
            await repo.restore_contacts(moved, winner.id)
            await self._refresh_contact_search([uuid.UUID(c) for c, _ in moved])
        now = await repo.now()
        merge = await repo.update(
            merge.id, {"status": "undone", "undone_at": now, "undone_by": actor}
        )
        await svc.repo.audit(
            actor=actor,
            action="merge_undo",
            entity=self.entity,
            record_count=len(ids),
            details={"merge_id": str(merge.id), "winner_id": str(winner.id)},
        )
        public = svc.public_changes(changes)
        await svc.announce(
            "merge_undone",
            restored,
            {
                "merge_id": str(merge.id),
                "winner_id": str(winner.id),
                "loser_ids": [str(i) for i in merge.loser_ids],
                "changes": public,
            },
        )
        restored_losers = await svc.repo.get_many(list(merge.loser_ids))
        return {
            **merge_view(merge, undo_hours),
            "changes": public,
            "result": await svc.view(restored),
            "restored": await svc.views(restored_losers),
        }


def winner_company(restore: dict[str, Any]) -> uuid.UUID | None:
    value = restore.get("company_id")
    return uuid.UUID(value) if value else None


def _conflict(detail: str) -> ProblemError:
    return ProblemError(409, detail, title="Conflict")


def merge_view(merge: Merge, undo_hours: int) -> dict[str, Any]:
    snapshot = merge.snapshot or {}
    repointed = {"activities": len(snapshot.get("activities", []))}
    if merge.entity == "company":
        repointed["contacts"] = len(snapshot.get("contacts", []))
    return {
        "id": str(merge.id),
        "entity": merge.entity,
        "winner_id": str(merge.winner_id),
        "loser_ids": [str(i) for i in merge.loser_ids],
        "choices": merge.choices,
        "changed_fields": merge.changed_fields,
        "status": merge.status,
        "actor": merge.actor,
        "created_at": jsonable(merge.created_at),
        "undo_until": jsonable(merge.created_at + timedelta(hours=undo_hours)),
        "undone_at": jsonable(merge.undone_at),
        "undone_by": merge.undone_by,
        "repointed": repointed,
    }
