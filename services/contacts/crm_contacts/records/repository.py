"""Record queries shared by contacts and companies (all SQL on records lives here)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Float,
    Integer,
    Select,
    bindparam,
    case,
    cast,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    type_coerce,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import Column as TableColumn
from sqlalchemy.types import Text

from crm_contacts.models import AccessAudit, FieldChange, Member
from crm_contacts.records.query import cursor_type
from crm_lib.pagination import decode_cursor

# --------------------------------------------------------------------------- search dictionary
# A dictionary word is a run of letters/digits of a search text (``[^[:alnum:]]+`` splits),
# 3 to 60 characters long and without a digit: phone numbers, numbered email local parts and
# external ids stay out (search finds those by trigram over ``search_text``). The migration
# con_t0006 backfills with the same rule.
_ADD_WORDS = (
    "INSERT INTO search_words (word)"
    " SELECT DISTINCT w FROM unnest({texts}) AS t(s),"
    " regexp_split_to_table(t.s, '[^[:alnum:]]+') AS w"
    " WHERE length(w) BETWEEN 3 AND 60 AND w !~ '[0-9]'"
    # Sorted, so concurrent writers adding the same new words take their locks in one order.
    " ORDER BY 1 ON CONFLICT DO NOTHING"
)
#: The words of ``$1`` (a ``text[]`` of search texts) into the dictionary, for asyncpg
#: connections writing with COPY (imports, the benchmark loader): one statement per chunk.
ADD_WORDS_SQL = _ADD_WORDS.format(texts="$1::text[]")
_WORD_RUN = re.compile(r"[^\W_]+")
_DIGIT = re.compile(r"[0-9]")


def word_runs(value: str) -> list[str]:
    """Runs of letters/digits of ``value`` (what ``[^[:alnum:]]+`` leaves)."""
    return _WORD_RUN.findall(value)


def dictionary_words(texts: Iterable[str]) -> list[str]:
    """The distinct dictionary words of search texts, sorted."""
    return sorted(
        {w for t in texts for w in word_runs(t or "") if 3 <= len(w) <= 60 and not _DIGIT.search(w)}
    )


_PENDING_TEXTS = "crm_contacts.pending_search_texts"


def _flush_pending_words(session: Session) -> None:
    texts = session.info.pop(_PENDING_TEXTS, None)
    if texts:
        stmt = text(_ADD_WORDS.format(texts=":texts")).bindparams(
            bindparam("texts", type_=ARRAY(Text))
        )
        session.execute(stmt, {"texts": sorted(texts)})


class SearchWordRepository:
    """The tenant's search dictionary (``search_words``)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, texts: Iterable[str | None]) -> None:
        """Add the words of ``texts`` when the transaction commits.

        Every write of a transaction (a batch call writes up to 100 records) queues its
        texts; one sorted statement adds them all just before the commit. Two concurrent
        transactions adding the same new words then lock them in one order and never
        deadlock, and the locks are held only for the last moment of the transaction.
        """
        wanted = {t for t in texts if t}
        if not wanted:
            return
        sync = self.session.sync_session
        pending: set[str] | None = sync.info.get(_PENDING_TEXTS)
        if pending is None:
            pending = sync.info[_PENDING_TEXTS] = set()
            event.listen(sync, "before_commit", _flush_pending_words, once=True)
        pending.update(wanted)

    async def forget(self, texts: Iterable[str]) -> list[str]:
        """Drop the words of ``texts`` that no live contact or company has any more.

        After an erasure: a name only the erased person had must not stay behind in the
        dictionary. One statement per word, each an index-backed ``EXISTS`` (trigram
        regex over ``search_text``); returns the words removed.
        """
        removed = []
        for word in dictionary_words(texts):
            # Words are letters/digits only: nothing in them is a regex operator.
            pattern = f"(^|[^[:alnum:]]){word}($|[^[:alnum:]])"
            gone = await self.session.scalar(
                text(
                    "DELETE FROM search_words WHERE word = :w"
                    " AND NOT EXISTS (SELECT 1 FROM contacts"
                    "  WHERE deleted_at IS NULL AND search_text ~ :p)"
                    " AND NOT EXISTS (SELECT 1 FROM companies"
                    "  WHERE deleted_at IS NULL AND search_text ~ :p)"
                    " RETURNING word"
                ),
                {"w": word, "p": pattern},
            )
            if gone is not None:
                removed.append(gone)
        return removed

    async def closest(
        self, terms: list[str], similarity: float, limit: int
    ) -> dict[str, list[str] | None]:
        """Per term: ``None`` when a dictionary word starts with it, else the ``limit``
        words most similar to it (trigram similarity ≥ ``similarity``, best first)."""
        if not terms:
            return {}
        await self.session.execute(
            text("SELECT set_config('pg_trgm.similarity_threshold', :v, true)"),
            {"v": str(similarity)},
        )
        stmt = text(
            "SELECT t.term, CASE WHEN k.known THEN NULL ELSE ARRAY("
            "  SELECT w.word FROM search_words AS w"
            "  WHERE w.word OPERATOR(extensions.%) t.term"
            "  ORDER BY extensions.similarity(w.word, t.term) DESC, w.word LIMIT :limit"
            " ) END AS near"
            " FROM unnest(:terms) AS t(term)"
            " CROSS JOIN LATERAL (SELECT EXISTS ("
            "  SELECT 1 FROM search_words AS w"
            "  WHERE w.word >= t.term AND w.word < t.term || :top"
            " ) AS known) AS k"
        ).bindparams(bindparam("terms", type_=ARRAY(Text)))
        rows = await self.session.execute(
            stmt, {"terms": terms, "limit": limit, "top": "\U0010ffff"}
        )
        return {term: (list(near) if near is not None else None) for term, near in rows.all()}

    async def existing(self, words: Iterable[str]) -> set[str]:
        """Those of ``words`` that are in the dictionary (primary-key probes)."""
        wanted = sorted(set(words))
        if not wanted:
            return set()
        stmt = text("SELECT word FROM search_words WHERE word = ANY(:words)").bindparams(
            bindparam("words", type_=ARRAY(Text))
        )
        return set((await self.session.scalars(stmt, {"words": wanted})).all())


class RecordRepository:
    def __init__(self, session: AsyncSession, model: Any) -> None:
        self.session = session
        self.model = model

    def live(self) -> Select[Any]:
        return select(self.model).where(self.model.deleted_at.is_(None))

    async def get(self, record_id: uuid.UUID, *, lock: bool = False) -> Any | None:
        stmt = self.live().where(self.model.id == record_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_many(self, ids: list[uuid.UUID], *, lock: bool = False) -> list[Any]:
        if not ids:
            return []
        stmt = self.live().where(self.model.id.in_(ids)).order_by(self.model.id)
        if lock:
            stmt = stmt.with_for_update()
        return list((await self.session.execute(stmt)).scalars())

    async def find_live_by(self, column: str, value: Any) -> Any | None:
        """The oldest live record whose ``column`` equals ``value`` (upsert keys)."""
        attr = getattr(self.model, column)
        stmt = (
            self.live()
            .where(attr == value)
            .order_by(self.model.created_at, self.model.id)
            .limit(1)
            .with_for_update()
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def insert(self, values: dict[str, Any]) -> Any:
        stmt = insert(self.model).values(**values).returning(self.model)
        row = (await self.session.execute(stmt)).scalar_one()
        await SearchWordRepository(self.session).add([values.get("search_text")])
        return row

    async def soft_delete(self, record_id: uuid.UUID, values: dict[str, Any]) -> Any:
        """``update`` that also marks the record deleted, now."""
        return await self.update(record_id, {"deleted_at": func.now(), **values})

    async def update(self, record_id: uuid.UUID, values: dict[str, Any]) -> Any:
        stmt = (
            update(self.model)
            .where(self.model.id == record_id)
            .values(**values, version=self.model.version + 1, updated_at=func.now())
            .returning(self.model)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        row = (await self.session.execute(stmt)).scalar_one()
        if isinstance(values.get("search_text"), str):
            await SearchWordRepository(self.session).add([values["search_text"]])
        return row

    async def page(
        self,
        where: list[ColumnElement[bool]],
        order: list[Any],
        limit: int,
        extra_columns: list[Any] | None = None,
    ) -> list[Any]:
        stmt = select(self.model, *(extra_columns or [])).where(
            self.model.deleted_at.is_(None), *where
        )
        stmt = stmt.order_by(*order).limit(limit)
        return list((await self.session.execute(stmt)).all())

    def owned_by(self, owners: frozenset[uuid.UUID] | None) -> list[ColumnElement[bool]]:
        """Records of these owners (None: every record)."""
        if owners is None:
            return []
        return [self.model.owner_id.in_(sorted(owners))]

    def tags_condition(self, ids: list[uuid.UUID] | None, *, any_of: bool) -> ColumnElement[bool]:
        """Records carrying every one (``any_of``: one) of these tags; None (a tag that
        does not exist): no record."""
        if ids is None:
            return literal(False)
        return self.model.tag_ids.overlap(ids) if any_of else self.model.tag_ids.contains(ids)

    def search_condition(
        self,
        terms: list[str],
        prefix_query: str,
        groups: list[list[tuple[str, float]]],
        corrected_query: str | None,
        *,
        need_trigram: bool,
        where: list[ColumnElement[bool]],
        candidates: int,
        fuzzy_below: int,
    ) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
        """The search condition and rank (``RecordService.search`` says how it ranks):
        exact/prefix matches of ``prefix_query`` on the full-text index (companies: the
        phrase as a substring), fuzzy ones of ``corrected_query`` (each piece or one of
        its corrections in ``groups``, scored by closeness) and, with ``need_trigram``,
        by trigram word similarity."""
        model = self.model
        phrase = " ".join(terms)
        text_col = model.search_text
        vector = getattr(model, "search_vector", None)
        fuzzies: list[ColumnElement[bool]] = []
        closeness: ColumnElement[Any] = literal(0.0, Float)
        if vector is None:
            exact = text_col.like(f"%{_escape_like(phrase)}%", escape="\\")
        else:
            exact = vector.op("@@")(_tsquery(prefix_query))
            if groups and corrected_query is not None:
                fuzzies.append(vector.op("@@")(_tsquery(corrected_query)))
                closeness = sum(
                    (
                        case(
                            *((vector.op("@@")(_tsquery(f"'{w}':*")), s) for w, s in group),
                            else_=0.0,
                        )
                        for group in groups
                    ),
                    literal(0.0, Float),
                ) / len(groups)
        if need_trigram:
            fuzzies.append(text_col.op("OPERATOR(extensions.%>)")(literal(phrase)))
        fuzzy = or_(*fuzzies) if fuzzies else None
        similarity = func.extensions.word_similarity(literal(phrase), text_col, type_=Float)
        rank = type_coerce(cast(exact, Integer) * 2 + closeness + similarity * 0.1, Float)
        ids = self.search_candidates(where, exact, fuzzy, candidates, fuzzy_below)
        return model.id.in_(ids), rank

    def search_candidates(
        self,
        where: list[ColumnElement[bool]],
        exact: ColumnElement[bool],
        fuzzy: ColumnElement[bool] | None,
        limit: int,
        fuzzy_below: int,
    ) -> Select[Any] | CompoundSelect:
        """Ids of up to ``limit`` live ``exact`` matches, plus up to ``limit`` ``fuzzy``
        ones when there were fewer than ``fuzzy_below`` exact ones (else no fuzzy scan)."""
        live = [self.model.deleted_at.is_(None), *where]
        if fuzzy is None:
            return select(self.model.id).where(*live, exact).limit(limit)
        first = select(self.model.id).where(*live, exact).limit(limit).cte("search_exact")
        short = select(func.count()).select_from(first).scalar_subquery() < fuzzy_below
        more = select(self.model.id).where(*live, fuzzy, short).limit(limit)
        return union(select(first.c.id), more)

    async def set_word_similarity_threshold(self, value: float) -> None:
        await self.session.execute(
            text("SELECT set_config('pg_trgm.word_similarity_threshold', :v, true)"),
            {"v": str(value)},
        )

    async def active_member(self, user_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(Member.user_id).where(Member.user_id == user_id, Member.active)
        )
        return found is not None

    async def add_changes(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(FieldChange), rows)

    async def audit(self, **values: Any) -> None:
        await self.session.execute(insert(AccessAudit).values(**values))


def keyset_bound(
    expr: ColumnElement[Any], descending: bool, cursor: str | None
) -> list[ColumnElement[bool]]:
    """``expr <= v`` (``>=`` ascending) after a cursor on a NOT NULL sort column.

    Implied by the keyset condition, but unlike its OR an index can seek to it, so a
    page deep into a large table reads 50 index entries instead of all before it.
    """
    column = getattr(expr, "expression", None)
    if cursor is None or not isinstance(column, TableColumn) or column.nullable:
        return []
    has_value, value, _last = decode_cursor(cursor, bool, cursor_type(expr) | None, uuid.UUID)
    if not has_value:
        return []
    return [expr <= value if descending else expr >= value]


def _tsquery(query: str) -> ColumnElement[Any]:
    return func.to_tsquery(text("'simple'::regconfig"), query)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
