"""All SQL of imports (tenant-bound sessions): the jobs, chunks, row errors and
before-images (``ImportRepository``) and a chunk's lookups and bulk writes on the
records (``ImportRecordRepository``); the lease mechanism's own SQL is
``crm_contacts.jobs.repository``."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Text, any_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from crm_contacts.models import (
    Company,
    Contact,
    ImportChunk,
    ImportJob,
    ImportRowError,
    ImportUpdate,
    Member,
)
from crm_contacts.records.repository import ADD_WORDS_SQL


class ImportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_job(self, values: dict[str, Any]) -> ImportJob:
        stmt = insert(ImportJob).values(**values).returning(ImportJob)
        return (await self.session.execute(stmt)).scalar_one()

    async def add_chunks(self, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), 50):
            await self.session.execute(insert(ImportChunk), rows[start : start + 50])

    async def get(self, job_id: uuid.UUID, *, lock: bool = False) -> ImportJob | None:
        stmt = select(ImportJob).where(ImportJob.id == job_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def jobs(
        self, actor: str, all_jobs: bool, before: tuple[Any, Any] | None, limit: int
    ) -> list[ImportJob]:
        stmt = select(ImportJob)
        if not all_jobs:
            # by the creating principal (user, API key or client), as ``visible`` decides
            stmt = stmt.where(ImportJob.created_by == actor)
        if before is not None:
            stmt = stmt.where(
                or_(
                    ImportJob.created_at < before[0],
                    (ImportJob.created_at == before[0]) & (ImportJob.id < before[1]),
                )
            )
        stmt = stmt.order_by(ImportJob.created_at.desc(), ImportJob.id.desc()).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def set(self, job_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id)
            .values(**values, updated_at=func.now())
            .execution_options(synchronize_session=False)
        )

    async def set_running(self, job_id: uuid.UUID) -> None:
        await self.set(job_id, status="running", started_at=func.now())

    async def finish(self, job_id: uuid.UUID, status: str) -> None:
        """The job's last status; its lease is given up."""
        await self.set(
            job_id, status=status, finished_at=func.now(), lease_token=None, lease_until=None
        )

    async def chunk(
        self, job_id: uuid.UUID, seq: int, *, with_data: bool = True
    ) -> ImportChunk | None:
        stmt = select(ImportChunk).where(ImportChunk.job_id == job_id, ImportChunk.seq == seq)
        if not with_data:
            stmt = stmt.options(defer(ImportChunk.data))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def chunk_data(self, job_id: uuid.UUID, seq: int) -> bytes | None:
        """A chunk's packed rows alone (the job runner reads the next chunk ahead)."""
        data = await self.session.scalar(
            select(ImportChunk.data).where(ImportChunk.job_id == job_id, ImportChunk.seq == seq)
        )
        return None if data is None else bytes(data)

    async def set_created(self, job_id: uuid.UUID, seq: int, ids: list[uuid.UUID]) -> None:
        await self.session.execute(
            update(ImportChunk)
            .where(ImportChunk.job_id == job_id, ImportChunk.seq == seq)
            .values(created_ids=ids)
        )

    async def add_errors(self, job_id: uuid.UUID, errors: list[Any]) -> None:
        if errors:
            await self.session.execute(
                insert(ImportRowError),
                [
                    {
                        "job_id": job_id,
                        "row_no": e.row_no,
                        "column": e.column,
                        "message": e.message[:2000],
                        "value": e.value,
                    }
                    for e in errors
                ],
            )

    async def clear_results(self, job_id: uuid.UUID) -> None:
        await self.session.execute(delete(ImportRowError).where(ImportRowError.job_id == job_id))

    async def errors(self, job_id: uuid.UUID, after: int, limit: int) -> list[ImportRowError]:
        stmt = (
            select(ImportRowError)
            .where(ImportRowError.job_id == job_id, ImportRowError.id > after)
            .order_by(ImportRowError.id)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def updates(self, job_id: uuid.UUID, seq: int) -> list[ImportUpdate]:
        stmt = select(ImportUpdate).where(ImportUpdate.job_id == job_id, ImportUpdate.seq == seq)
        return list((await self.session.execute(stmt)).scalars())

    async def delete_unchanged_created(self, ids: list[uuid.UUID], actor: str | None) -> list[Any]:
        """Soft-delete the records an import created that nobody changed since (version
        1): (id, owner_id, version) of each one deleted."""
        gone = await self.session.execute(
            text(
                "UPDATE contacts SET deleted_at = now(), version = version + 1,"
                " updated_at = now(), updated_by = :actor"
                " WHERE id = ANY(CAST(:ids AS uuid[])) AND version = 1 AND deleted_at IS NULL"
                " RETURNING id, owner_id, version"
            ),
            {"ids": ids, "actor": actor},
        )
        return list(gone.all())


#: Words already split off (``dictionary_words``, the same rule as ``ADD_WORDS_SQL``) into
#: the search dictionary: sorted, so concurrent writers lock them in one order.
_ADD_WORD_LIST_SQL = (
    "INSERT INTO search_words (word) SELECT w FROM unnest($1::text[]) AS w"
    " ORDER BY 1 ON CONFLICT DO NOTHING"
)
HISTORY_COLUMNS = ["entity", "record_id", "field", "old_value", "new_value", "reason", "actor"]


class ImportRecordRepository:
    """All SQL of an import chunk on the tenant's records: the lookups of a chunk (one
    query each, arrays rather than a bind per key) and its set-based writes (``COPY``,
    a temporary table and one ``UPDATE … FROM``), in the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------ lookups
    async def existing_by(self, column: str, values: list[str]) -> dict[str, list[Contact]]:
        """Live contacts by ``column`` value, locked (they may be updated)."""
        if not values:
            return {}
        model_col = getattr(Contact, column)
        keys = bindparam("keys", values, type_=ARRAY(Text))  # one array, not a bind per key
        stmt = select(Contact).where(model_col == any_(keys), Contact.deleted_at.is_(None))
        out: dict[str, list[Contact]] = {}
        for row in (await self.session.execute(stmt.with_for_update())).scalars():
            out.setdefault(getattr(row, column), []).append(row)
        return out

    async def holders(
        self, emails: set[str], phones: set[str], externals: set[str]
    ) -> list[tuple[Any, ...]]:
        """(email, phone, external_id, id, owner_id) of live contacts holding any of
        these primary emails, phones or external ids."""
        rows = await self.session.execute(
            text(
                "SELECT email, phone, external_id, id, owner_id FROM contacts"
                " WHERE deleted_at IS NULL"
                " AND (email = ANY(CAST(:emails AS text[])) OR phone = ANY(CAST(:phones AS text[]))"
                " OR external_id = ANY(CAST(:externals AS text[])))"
            ),
            {"emails": list(emails), "phones": list(phones), "externals": list(externals)},
        )
        return [tuple(r) for r in rows.all()]

    async def similar_names(
        self,
        row_nos: list[int],
        company_ids: list[uuid.UUID],
        names: list[str],
        threshold: float,
    ) -> list[tuple[int, uuid.UUID, uuid.UUID | None]]:
        """(row_no, contact id, owner id) of the first live contact of each row's company
        whose lower-cased "first last" is similar (trigrams) to the row's name."""
        rows = await self.session.execute(
            text(
                "SELECT DISTINCT ON (u.row_no) u.row_no, c.id, c.owner_id"
                " FROM unnest(CAST(:row_nos AS int[]), CAST(:company_ids AS uuid[]),"
                " CAST(:names AS text[])) AS u(row_no, company_id, name)"
                " JOIN contacts AS c ON c.company_id = u.company_id"
                " AND c.deleted_at IS NULL"
                " WHERE extensions.similarity("
                "lower(concat_ws(' ', c.first_name, c.last_name)), u.name) >= :threshold"
                " ORDER BY u.row_no, c.created_at, c.id"
            ),
            {
                "row_nos": row_nos,
                "company_ids": company_ids,
                "names": names,
                "threshold": threshold,
            },
        )
        return [(r[0], r[1], r[2]) for r in rows.all()]

    @staticmethod
    def _visible(owners: frozenset[uuid.UUID] | None) -> list[Any]:
        return [] if owners is None else [Company.owner_id.in_(sorted(owners))]

    async def company_names(
        self, ids: set[uuid.UUID], owners: frozenset[uuid.UUID] | None
    ) -> dict[uuid.UUID, str]:
        """Names of live companies by id, among those of ``owners`` (None: all)."""
        if not ids:
            return {}
        rows = await self.session.execute(
            select(Company.id, Company.name).where(
                Company.id.in_(list(ids)), Company.deleted_at.is_(None), *self._visible(owners)
            )
        )
        return {company_id: name for company_id, name in rows.all()}

    async def companies_named(
        self, lowered: list[str], owners: frozenset[uuid.UUID] | None
    ) -> list[tuple[str, uuid.UUID]]:
        """(lower-cased name, id) of live companies with these lower-cased names."""
        rows = await self.session.execute(
            select(func.lower(Company.name), Company.id).where(
                func.lower(Company.name).in_(lowered),
                Company.deleted_at.is_(None),
                *self._visible(owners),
            )
        )
        return [(name, company_id) for name, company_id in rows.all()]

    async def company_name(self, company_id: uuid.UUID) -> str | None:
        return await self.session.scalar(select(Company.name).where(Company.id == company_id))

    async def members_by_email(self, emails: list[str]) -> dict[str, uuid.UUID]:
        """Active members' user ids by lower-cased login email."""
        found = await self.session.execute(
            select(func.lower(Member.email), Member.user_id).where(
                func.lower(Member.email).in_(emails),
                Member.active,
            )
        )
        return dict(found.all())

    async def active_members(self, ids: set[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        rows = await self.session.scalars(
            select(Member.user_id).where(Member.user_id.in_(list(ids)), Member.active)
        )
        return set(rows)

    async def touched_by(self, job_id: uuid.UUID, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Of these records, those the job created or changed in an earlier chunk."""
        if not ids:
            return set()
        rows = await self.session.execute(
            text(
                "SELECT m.id FROM unnest(CAST(:ids AS uuid[])) AS m(id) WHERE EXISTS ("
                " SELECT 1 FROM import_chunks c WHERE c.job_id = :job"
                " AND c.created_ids @> ARRAY[m.id]) OR EXISTS ("
                " SELECT 1 FROM import_updates u WHERE u.job_id = :job AND u.record_id = m.id)"
            ),
            {"ids": ids, "job": job_id},
        )
        return {r[0] for r in rows.all()}

    # ------------------------------------------------------------------ writes
    async def _raw(self) -> Any:
        conn = await self.session.connection()
        raw = await conn.get_raw_connection()
        return raw.driver_connection

    async def copy_contacts(self, rows: list[tuple[Any, ...]], columns: list[str]) -> None:
        apg = await self._raw()
        await apg.copy_records_to_table("contacts", records=rows, columns=columns)

    async def add_word_list(self, words: list[str]) -> None:
        """Dictionary words already split off (``dictionary_words``)."""
        apg = await self._raw()
        await apg.execute(_ADD_WORD_LIST_SQL, words)

    async def add_words(self, texts: list[str]) -> None:
        """The dictionary words of these search texts (``ADD_WORDS_SQL``)."""
        apg = await self._raw()
        await apg.execute(ADD_WORDS_SQL, texts)

    async def copy_primary_links(self, links: list[tuple[uuid.UUID, uuid.UUID, bool]]) -> None:
        apg = await self._raw()
        await apg.copy_records_to_table(
            "contact_companies",
            records=links,
            columns=["contact_id", "company_id", "is_primary"],
        )

    async def copy_history(self, rows: list[tuple[Any, ...]]) -> None:
        apg = await self._raw()
        await apg.copy_records_to_table("field_changes", records=rows, columns=HISTORY_COLUMNS)

    async def patch_contacts(
        self, records: list[tuple[Any, ...]], columns: tuple[str, ...], actor: str | None
    ) -> dict[uuid.UUID, int]:
        """Apply (id, expected version, *columns) patches to contacts locked when matched:
        the version after, by id."""
        apg = await self._raw()
        await apg.execute(
            "CREATE TEMP TABLE IF NOT EXISTS import_patch ("
            " id uuid PRIMARY KEY, expected int NOT NULL,"
            " first_name text, last_name text, email text, phone text, company_id uuid,"
            " owner_id uuid, lifecycle_stage text, custom_fields jsonb, emails jsonb,"
            " phones jsonb, title text, address jsonb, source text, consent jsonb,"
            " external_id text, tag_ids uuid[], sensitive_fields jsonb, search_text text"
            ") ON COMMIT DELETE ROWS"
        )
        await apg.copy_records_to_table(
            "import_patch",
            records=records,
            columns=["id", "expected", *columns],
            schema_name="pg_temp",
        )
        assignments = ", ".join(f"{c} = p.{c}" for c in columns)
        # Rows were locked (FOR UPDATE) when matched: versions cannot have moved.
        updated = await apg.fetch(
            f"UPDATE contacts AS c SET {assignments}, version = c.version + 1,"
            " updated_at = now(), updated_by = $1"
            " FROM pg_temp.import_patch AS p WHERE c.id = p.id AND c.version = p.expected"
            " RETURNING c.id, c.version",
            actor,
        )
        return {r["id"]: r["version"] for r in updated}

    async def set_primary_company(
        self, contact_id: uuid.UUID, company_id: uuid.UUID | None
    ) -> None:
        apg = await self._raw()
        await apg.execute(
            "UPDATE contact_companies SET is_primary = false WHERE contact_id = $1 AND is_primary",
            contact_id,
        )
        if company_id is not None:
            await apg.execute(
                "INSERT INTO contact_companies (contact_id, company_id, is_primary)"
                " VALUES ($1, $2, true) ON CONFLICT (contact_id, company_id)"
                " DO UPDATE SET is_primary = true",
                contact_id,
                company_id,
            )

    async def add_before_images(self, rows: list[tuple[Any, ...]]) -> None:
        """(job id, record id, seq, before JSON, version after) of updated records."""
        apg = await self._raw()
        await apg.executemany(
            "INSERT INTO import_updates (job_id, record_id, seq, before, version_after)"
            " VALUES ($1, $2, $3, $4, $5)",
            rows,
        )
