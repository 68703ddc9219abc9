"""List queries shared by contacts and companies: filters, sort, search, keyset cursors.

Query-string grammar (``GET /api/v1/contacts?...``):

* ``<field>=v`` or ``<field>__<op>=v`` with op in ``eq ne in gt gte lt lte contains
  exists``; ``in`` takes comma-separated values; ``exists`` takes true/false.
* ``cf.<key>`` addresses a custom field the same way (typed by its definition).
* ``tag=<name|id>`` (repeatable: all of them), ``tag__in=a,b`` (any of them).
* ``created_after`` / ``created_before`` / ``updated_after`` / ``updated_before``.
* ``owner_id=me`` means the caller; ``owner_id__exists=false`` the unowned.
* ``sort=<field>`` / ``sort=-<field>`` (standard or ``cf.<key>``), ``fields=a,b``,
  ``q=<text>`` (ranked search), ``limit``, ``cursor``.

Keyset pagination on ``(sort value, id)`` with NULLs last, so cursors stay stable.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    Numeric,
    String,
    and_,
    cast,
    func,
    literal,
    not_,
    or_,
    true,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import operators

from crm_contacts.fields.values import FieldSpec, coerce_filter_value, sort_key_type
from crm_lib.http import ProblemError
from crm_lib.pagination import clamp_limit, decode_cursor, encode_cursor

OPS = ("eq", "ne", "in", "gt", "gte", "lt", "lte", "contains", "exists")
MAX_IN = 500
RESERVED = frozenset({"q", "sort", "fields", "limit", "cursor", "allow_duplicate"})
RANGE_ALIASES = {
    "created_after": "created_at__gte",
    "created_before": "created_at__lt",
    "updated_after": "updated_at__gte",
    "updated_before": "updated_at__lt",
}


def bad_query(field_name: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        f"{field_name}: {message}",
        title="Validation failed",
        errors=[{"field": field_name, "message": message}],
    )


@dataclass(frozen=True)
class Column:
    """A filterable/sortable standard column: its attribute and value kind."""

    attr: InstrumentedAttribute[Any]
    kind: str  # uuid | text | datetime | enum
    sortable: bool = True


@dataclass
class ListQuery:
    filters: list[tuple[str, str, str]] = field(default_factory=list)  # (field, op, raw)
    tags_all: list[str] = field(default_factory=list)
    tags_any: list[str] = field(default_factory=list)
    sort: str | None = None
    fields: list[str] | None = None
    q: str | None = None
    limit: int = 50
    cursor: str | None = None

    def to_filters_dict(self) -> dict[str, Any]:
        """The filter part, as saved views and export jobs store it."""
        out: dict[str, Any] = {
            f"{f}__{op}" if op != "eq" else f: raw for f, op, raw in self.filters
        }
        if self.tags_all:
            out["tag"] = list(self.tags_all)
        if self.tags_any:
            out["tag__in"] = ",".join(self.tags_any)
        if self.q:
            out["q"] = self.q
        return out


def parse_list_query(params: Mapping[str, list[str]], *, limit: int | None = None) -> ListQuery:
    """Parse a multi-dict of query parameters (Litestar ``request.query_params.dict()``)."""
    query = ListQuery(limit=clamp_limit(limit))
    for raw_name, values in params.items():
        name = RANGE_ALIASES.get(raw_name, raw_name)
        if raw_name in ("limit",):
            continue
        if len(name) > 120:
            raise bad_query(name[:40], "parameter name too long")
        for value in values:
            if len(value) > 2000:
                raise bad_query(name, "value too long")
            if "\x00" in value:
                raise bad_query(name, "must not contain NUL characters")
        if name == "q":
            text = values[-1].strip()
            if len(text) > 200:
                raise bad_query("q", "at most 200 characters")
            query.q = text or None
        elif name == "sort":
            query.sort = values[-1]
        elif name == "fields":
            query.fields = [f.strip() for f in values[-1].split(",") if f.strip()]
        elif name == "cursor":
            query.cursor = values[-1]
        elif name == "allow_duplicate":
            continue
        elif name == "tag":
            query.tags_all.extend(v for v in values if v)
        elif name == "tag__in":
            query.tags_any.extend(t for v in values for t in v.split(",") if t)
        else:
            field_name, _, op = name.partition("__")
            op = op or "eq"
            if op not in OPS:
                raise bad_query(name, f"unknown operator {op!r} (one of {', '.join(OPS)})")
            for value in values:
                query.filters.append((field_name, op, value))
    return query


def parse_filters_dict(filters: Mapping[str, Any]) -> ListQuery:
    """The inverse of ``ListQuery.to_filters_dict`` (saved views, export jobs)."""
    multi: dict[str, list[str]] = {}
    for key, value in filters.items():
        values = value if isinstance(value, list) else [value]
        multi[key] = [str(v) for v in values]
    return parse_list_query(multi)


class RecordQueryBuilder:
    """Turns a ``ListQuery`` into WHERE/ORDER BY for one entity table."""

    def __init__(
        self,
        model: Any,
        columns: Mapping[str, Column],
        specs: Mapping[str, FieldSpec],
        default_sort: str,
        me: uuid.UUID | None,
    ) -> None:
        self.model = model
        self.columns = columns
        self.specs = specs
        self.default_sort = default_sort
        self.me = me

    # ------------------------------------------------------------------ filters
    def _custom_expr(self, key: str, name: str) -> tuple[ColumnElement[Any], FieldSpec]:
        spec = self.specs.get(key)
        if spec is None:
            raise bad_query(name, "no such custom field")
        if spec.sensitive:
            raise bad_query(name, "sensitive fields cannot be filtered or sorted")
        node = self.model.custom_fields[key]
        if spec.type == "currency":
            node = node["amount"]
        kind = sort_key_type(spec)
        if kind == "numeric":
            return cast(node.astext, Numeric), spec
        if kind == "boolean":
            return cast(node.astext, Boolean), spec
        return node.astext, spec

    def _value(self, name: str, kind: str, raw: str, spec: FieldSpec | None) -> Any:
        try:
            if spec is not None:
                return coerce_filter_value(spec, raw)
            if kind == "uuid":
                if raw == "me":
                    if self.me is None:
                        raise ValueError("'me' needs a signed-in user")
                    return self.me
                return uuid.UUID(raw)
            if kind == "datetime":
                parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    raise ValueError("needs a time zone (e.g. Z)")
                return parsed
            return raw
        except ValueError as exc:
            raise bad_query(name, f"bad value {raw[:50]!r}: {exc}") from exc

    def condition(self, field_name: str, op: str, raw: str) -> ColumnElement[bool]:
        name = field_name if op == "eq" else f"{field_name}__{op}"
        spec: FieldSpec | None = None
        expr: Any
        if field_name.startswith("cf."):
            expr, spec = self._custom_expr(field_name[3:], name)
            kind = sort_key_type(spec)
            if spec.type == "multi_select":
                if op not in ("eq", "in", "exists"):
                    raise bad_query(name, "multi-select fields take eq, in or exists")
                node = self.model.custom_fields[spec.key]
                if op == "exists":
                    return self._exists(self.model.custom_fields.has_key(spec.key), raw, name)
                wanted = raw.split(",") if op == "in" else [raw]
                return or_(*(node.contains([w]) for w in wanted[:MAX_IN]))
            if op == "exists":
                return self._exists(self.model.custom_fields.has_key(spec.key), raw, name)
        else:
            column = self.columns.get(field_name)
            if column is None:
                raise bad_query(name, "not a filterable field")
            expr = column.attr
            kind = column.kind
            if op == "exists":
                return self._exists(expr.is_not(None), raw, name)
        if op == "in":
            parts = [p for p in raw.split(",") if p]
            if not parts or len(parts) > MAX_IN:
                raise bad_query(name, f"needs 1 to {MAX_IN} comma-separated values")
            return expr.in_([self._value(name, kind, p, spec) for p in parts])
        if op == "contains":
            if kind not in ("text", "enum"):
                raise bad_query(name, "contains works on text fields")
            pattern = "%" + raw.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            return expr.ilike(pattern, escape="\\")
        value = self._value(name, kind, raw, spec)
        if kind == "numeric" and spec is not None:
            value = literal(value, Numeric)
        compare = {
            "eq": operators.eq,
            "ne": operators.ne,
            "gt": operators.gt,
            "gte": operators.ge,
            "lt": operators.lt,
            "lte": operators.le,
        }[op]
        condition: ColumnElement[bool] = compare(expr, value)
        if op == "ne":
            condition = or_(condition, expr.is_(None))
        return condition

    @staticmethod
    def _exists(present: ColumnElement[bool], raw: str, name: str) -> ColumnElement[bool]:
        flag = raw.lower()
        if flag in ("true", "1", "yes"):
            return present
        if flag in ("false", "0", "no"):
            return not_(present)
        raise bad_query(name, "exists takes true or false")

    # ------------------------------------------------------------------ sort + cursor
    def sort_expr(self, sort: str | None) -> tuple[str, ColumnElement[Any], bool]:
        raw = sort or self.default_sort
        descending = raw.startswith("-")
        name = raw.lstrip("-+")
        if name.startswith("cf."):
            expr, spec = self._custom_expr(name[3:], "sort")
            if spec.type == "multi_select":
                raise bad_query("sort", "multi-select fields cannot be sorted")
        else:
            column = self.columns.get(name)
            if column is None or not column.sortable:
                raise bad_query("sort", f"cannot sort by {name!r}")
            expr = column.attr  # type: ignore[assignment]
        return name, expr, descending

    def page(
        self,
        expr: ColumnElement[Any],
        descending: bool,
        cursor: str | None,
        value_type: type,
    ) -> tuple[list[ColumnElement[Any]], ColumnElement[bool]]:
        """ORDER BY clauses and the keyset condition after ``cursor`` (NULLs last)."""
        id_col = self.model.id
        order = [
            (expr.desc() if descending else expr.asc()).nulls_last(),
            id_col.asc(),
        ]
        if cursor is None:
            return order, true()
        nullable: Any = value_type | None
        has_value, value, last_id = decode_cursor(cursor, bool, nullable, uuid.UUID)
        if not has_value:
            return order, and_(expr.is_(None), id_col > last_id)
        beyond = expr < value if descending else expr > value
        return order, or_(beyond, expr.is_(None), and_(expr == value, id_col > last_id))

    @staticmethod
    def next_cursor(value: Any, row_id: uuid.UUID) -> str:
        if isinstance(value, datetime):
            value = value.isoformat()
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            value = str(value)
        return encode_cursor(value is not None, value, str(row_id))


def cursor_type(expr: ColumnElement[Any]) -> type:
    """The Python type a sort expression's cursor value decodes to."""
    sql_type = expr.type
    if isinstance(sql_type, UUID):
        return uuid.UUID
    if isinstance(sql_type, Numeric | Float):
        return float
    if isinstance(sql_type, Boolean):
        return bool
    if isinstance(sql_type, String):
        return str
    python_type = getattr(sql_type, "python_type", str)
    return python_type if python_type in (datetime, str, int, float, bool) else str


def search_terms(q: str) -> list[str]:
    """Lower-cased words of a search string (punctuation splits words)."""
    cleaned = "".join(c if c.isalnum() or c in "@._+-" else " " for c in q.lower())
    words = []
    for word in cleaned.split():
        word = word.strip("._-+")
        if word:
            words.append(word[:60])
    return words[:8]


def prefix_tsquery(terms: list[str]) -> str:
    """``to_tsquery('simple', ...)`` text matching every term as a prefix."""
    parts = []
    for term in terms:
        # tsquery syntax characters are stripped; the rest is a plain lexeme.
        lexeme = "".join(c for c in term if c.isalnum() or c in "@.-_")
        if lexeme:
            parts.append(f"'{lexeme}':*")
    return " & ".join(parts)


def func_word_similarity() -> Any:
    return func.extensions.word_similarity
