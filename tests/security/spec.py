"""The merged OpenAPI document as a list of operations, and requests generated from it.

Everything the adversarial suite sends is derived from ``/api/v1/openapi.json``:

* every operation (method + path template), its path/query parameters and its JSON body;
* every place an id goes (a ``format: uuid`` path parameter, query parameter or body
  field) and the *resource kind* that id names, so another tenant's ids of that kind (and
  of every other kind) can be put there;
* a minimal, schema-valid body (required fields only) to carry those ids.

A path parameter or a body id whose kind this module cannot tell is an error (the test
using it fails), so a new resource kind forces someone to add a factory for it
(``tests/security/resources.py``) and a line here.
"""

from __future__ import annotations

import copy
import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HTTP_METHODS = ("get", "put", "post", "patch", "delete")

# -- which resource kind an id names -------------------------------------------------------

#: Path/query parameter name -> resource kind (when the name alone says it).
PARAM_KINDS: dict[str, str] = {
    "user_id": "user",
    "invitation_id": "invitation",
    "team_id": "team",
    "key_id": "api_key",
    "client_row_id": "oauth_client",
    "job_id": "tenant_export",
    "contact_id": "contact",
    "company_id": "company",
    "view_id": "view",
    "tag_id": "tag",
    "field_id": "custom_field",
    "activity_id": "activity",
    "merge_id": "merge",
    "import_id": "import",
    "export_id": "export",
}

#: (regex on the path template, parameter name) -> kind, checked before PARAM_KINDS: the
#: same parameter name means different things under different paths.
CONTEXT_KINDS: list[tuple[str, str, str]] = [
    (r"^/api/v1/contacts/", "record_id", "contact"),
    (r"^/api/v1/companies/", "record_id", "company"),
    (r"^/api/v1/audit/history/", "record_id", "contact"),  # entity is "contact" (below)
    (r"^/api/v1/merges$", "record_id", "contact"),
    (r"^/api/v1/gdpr/exports/", "request_id", "gdpr_export"),
    (r"^/api/v1/gdpr/erasures/", "request_id", "gdpr_erasure"),
    (r"^/api/v1/visibility-rules/", "team_id", "visibility_rule"),
]

#: Non-id path parameters and the value to use.
PARAM_VALUES: dict[str, str] = {"entity": "contact"}

#: Body fields holding ids: (regex on the path template, field name) -> kind; the field
#: name is the last named key (``loser_ids`` for ``loser_ids[0]``, ``id`` for
#: ``items[0].id``).
BODY_CONTEXT_KINDS: list[tuple[str, str, str]] = [
    (r"^/api/v1/contacts/", r"^(ids|winner_id|loser_ids|choices\..*|id)$", "contact"),
    (r"^/api/v1/companies/", r"^(ids|winner_id|loser_ids|choices\..*|id)$", "company"),
    (r"^/api/v1/tags/", r"^into_id$", "tag"),
]
BODY_FIELD_KINDS: dict[str, str] = {
    "owner_id": "user",
    "member_ids": "user",
    "team_ids": "team",
    "contact_id": "contact",
    "company_id": "company",
}

#: Ids inside bodies the schema does not type (free-form objects): operation -> locations.
UNTYPED_BODY_IDS: dict[str, list[tuple[Any, ...]]] = {
    "POST /api/v1/contacts/batch/update": [("items", 0, "id")],
    "POST /api/v1/companies/batch/update": [("items", 0, "id")],
}
#: What those untyped items need besides the id to be a valid request.
UNTYPED_BODY_BASE: dict[str, dict[str, Any]] = {
    "POST /api/v1/contacts/batch/update": {"items": [{"changes": {"title": "x"}}]},
    "POST /api/v1/companies/batch/update": {"items": [{"changes": {"industry": "x"}}]},
}


#: Values the OpenAPI does not pin down (a pattern or enum the server checks but the schema
#: does not say: worth fixing in the schema), or that must stay harmless:
#: (regex on the path template, field name, value).
BODY_HINTS: list[tuple[str, str, Any]] = [
    (r"^/api/v1/(api-keys|oauth/clients)$", "scopes", ["contacts:read"]),
    (r"^/api/v1/contacts/batch/upsert$", "key", "email"),
    (r"^/api/v1/companies/batch/upsert$", "key", "domain"),
    # sign-up must not create a tenant per caller: a password too weak (422)
    (r"^/api/v1/signup$", "password", "short"),
]


#: Ids the schema marks optional but a useful request needs (one of several is required).
NEEDED_OPTIONAL_IDS: dict[str, list[tuple[Any, ...]]] = {
    "POST /api/v1/activities": [("contact_id",)],
}


def param_kind(path: str, name: str) -> str | None:
    for pattern, param, kind in CONTEXT_KINDS:
        if param == name and re.search(pattern, path):
            return kind
    return PARAM_KINDS.get(name)


def body_kind(path: str, location: tuple[Any, ...]) -> str | None:
    names = [p for p in location if isinstance(p, str)]
    if not names:
        return None
    dotted = ".".join(names)
    last = names[-1]
    for pattern, fields, kind in BODY_CONTEXT_KINDS:
        if re.search(pattern, path) and (re.match(fields, dotted) or re.match(fields, last)):
            return kind
    return BODY_FIELD_KINDS.get(last)


# -- the document ----------------------------------------------------------------------------


@dataclass
class Param:
    name: str
    where: str  # path | query | header
    schema: dict[str, Any]
    required: bool

    @property
    def is_uuid(self) -> bool:
        return _is_uuid_schema(self.schema)


@dataclass
class Operation:
    method: str
    path: str
    service: str
    params: list[Param]
    body_schema: dict[str, Any] | None
    body_type: str | None  # content type of the body
    body_required: bool
    spec: Spec = field(repr=False)

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def path_params(self) -> list[Param]:
        return [p for p in self.params if p.where == "path"]

    @property
    def query_params(self) -> list[Param]:
        return [p for p in self.params if p.where == "query"]

    @property
    def json_body(self) -> bool:
        return self.body_type == "application/json"

    def id_slots(self) -> list[IdSlot]:
        """Every place an id goes: uuid path params, required uuid query params, body ids."""
        slots: list[IdSlot] = []
        for p in self.path_params:
            if p.is_uuid:
                slots.append(IdSlot("path", (p.name,), param_kind(self.path, p.name)))
        for p in self.query_params:
            if p.is_uuid and p.required:
                slots.append(IdSlot("query", (p.name,), param_kind(self.path, p.name)))
        if self.body_schema is not None and self.json_body:
            for loc in self.spec.uuid_locations(self.body_schema):
                slots.append(IdSlot("body", loc, body_kind(self.path, loc)))
            for loc in UNTYPED_BODY_IDS.get(self.key, []):
                slots.append(IdSlot("body", loc, body_kind(self.path, loc)))
        return slots

    def unknown_params(self) -> list[str]:
        """Path parameters this suite cannot fill (no factory, no value)."""
        out = []
        for p in self.path_params:
            if p.is_uuid and param_kind(self.path, p.name) is None:
                out.append(p.name)
            elif not p.is_uuid and p.name not in PARAM_VALUES and not p.schema.get("enum"):
                out.append(p.name)
        return out


@dataclass(frozen=True)
class IdSlot:
    where: str  # path | query | body
    location: tuple[Any, ...]
    kind: str | None

    def label(self) -> str:
        return f"{self.where}:{'.'.join(str(p) for p in self.location)}"


def _is_uuid_schema(schema: dict[str, Any]) -> bool:
    if schema.get("format") == "uuid":
        return True
    return any(
        alt.get("format") == "uuid" for alt in schema.get("oneOf", []) + schema.get("anyOf", [])
    )


class Spec:
    # No __dict__: the log scan's fixture harvest (crm_dev.testing_logs) would otherwise
    # walk the OpenAPI document and take every string under a path named ".../token" for
    # a secret (e.g. "identity", then found in every log line naming the service).
    __slots__ = ("components", "document", "operations", "optional_locations")

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components = document.get("components", {}).get("schemas", {})
        self.operations: list[Operation] = []
        self.optional_locations: set[tuple[Any, ...]] = set()
        for path, item in document.get("paths", {}).items():
            shared = item.get("parameters", [])
            for method in HTTP_METHODS:
                op = item.get(method)
                if op is None:
                    continue
                params = [
                    Param(
                        p["name"],
                        p["in"],
                        self.resolve(p.get("schema", {})),
                        bool(p.get("required")),
                    )
                    for p in [*shared, *op.get("parameters", [])]
                ]
                body_schema = body_type = None
                body = op.get("requestBody")
                if body:
                    content = body.get("content", {})
                    body_type = next(iter(content), None)
                    if body_type:
                        body_schema = self.resolve(content[body_type].get("schema", {}))
                self.operations.append(
                    Operation(
                        method.upper(),
                        path,
                        item.get("x-service", "?"),
                        params,
                        body_schema,
                        body_type,
                        bool(body and body.get("required")),
                        self,
                    )
                )

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[-1]]
            seen += 1
            if seen > 50:
                raise ValueError("$ref loop")
        return schema

    def variant(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The non-null alternative of a nullable schema, with the outer constraints."""
        schema = self.resolve(schema)
        alts = schema.get("oneOf") or schema.get("anyOf")
        if not alts:
            return schema
        chosen = next((self.resolve(a) for a in alts if a.get("type") != "null"), {})
        merged = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf")}
        merged.update(chosen)
        return merged

    # -- ids inside bodies ---------------------------------------------------------------

    def uuid_locations(
        self,
        schema: dict[str, Any],
        prefix: tuple[Any, ...] = (),
        depth: int = 0,
        optional: bool = False,
    ) -> Iterator[tuple[Any, ...]]:
        """Where ids go in bodies of ``schema``; those under an optional field are also
        remembered in ``optional_locations`` (filled only when a test puts an id there)."""
        schema = self.variant(schema)
        if depth > 6:
            return
        if _is_uuid_schema(schema):
            if optional:
                self.optional_locations.add(prefix)
            yield prefix
            return
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            required = set(schema.get("required", []))
            for name, sub in schema.get("properties", {}).items():
                yield from self.uuid_locations(
                    sub, (*prefix, name), depth + 1, optional or name not in required
                )
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict) and _is_uuid_schema(self.variant(extra)):
                # a map of name -> id (merge choices): one entry
                loc = (*prefix, "first_name")
                self.optional_locations.add(loc)
                yield loc
        elif kind == "array":
            yield from self.uuid_locations(
                schema.get("items", {}),
                (*prefix, 0),
                depth + 1,
                optional or not schema.get("minItems"),
            )

    # -- minimal valid bodies ------------------------------------------------------------

    def example(
        self, schema: dict[str, Any], name: str = "", depth: int = 0, path: str = ""
    ) -> Any:
        schema = self.variant(schema)
        for pattern, field_name, value in BODY_HINTS:
            if field_name == name and re.search(pattern, path):
                return copy.deepcopy(value)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            values = [v for v in schema["enum"] if v is not None]
            return values[0] if values else None
        if "default" in schema and depth > 0:
            return copy.deepcopy(schema["default"])
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        if kind == "object" or "properties" in schema:
            return {
                prop: self.example(sub, prop, depth + 1, path)
                for prop, sub in schema.get("properties", {}).items()
                if prop in schema.get("required", [])
            }
        if kind == "array":
            count = schema.get("minItems", 0)
            items = schema.get("items", {})
            return [self.example(items, name, depth + 1, path) for _ in range(count)]
        if kind == "integer":
            return int(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1))
        if kind == "number":
            return float(schema.get("minimum", 1))
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return self._string(schema, name)

    def _string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        tag = uuid.uuid4().hex[:10]
        if fmt == "uuid":
            return str(uuid.uuid4())
        if fmt == "email" or name == "email":
            return f"sec-{tag}@example.com"
        if fmt == "date-time":
            return datetime.now(UTC).isoformat()
        if fmt == "date":
            return datetime.now(UTC).date().isoformat()
        if fmt in ("uri", "url"):
            return "https://example.com/sec"
        candidates = [
            f"sec-{tag}",
            f"sec_{tag}",
            "contacts:read",
            "#336699",
            "https://example.com/sec",
            "live",
            "a",
            "Sec" + tag,
        ]
        pattern = schema.get("pattern")
        low, high = schema.get("minLength", 0), schema.get("maxLength", 10_000)
        for value in candidates:
            if not low <= len(value) <= high:
                continue
            if pattern:
                try:
                    if not re.search(pattern, value):
                        continue
                except re.error:
                    pass
            return value
        return "x" * max(1, low)

    def body_for(self, op: Operation) -> Any:
        if op.body_schema is None:
            return None
        base = UNTYPED_BODY_BASE.get(op.key)
        if base is not None:
            return copy.deepcopy(base)
        return self.example(op.body_schema, path=op.path)


def set_at(body: Any, location: tuple[Any, ...], value: Any) -> Any:
    """``body`` with ``value`` at ``location`` (containers created as needed)."""
    body = copy.deepcopy(body) if body is not None else {}
    node = body
    for here, nxt in itertools.pairwise(location):
        if isinstance(here, int):
            while len(node) <= here:
                node.append([] if isinstance(nxt, int) else {})
            if not isinstance(node[here], list | dict):
                node[here] = [] if isinstance(nxt, int) else {}
            node = node[here]
        else:
            if not isinstance(node.get(here), list | dict):
                node[here] = [] if isinstance(nxt, int) else {}
            node = node[here]
    last = location[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
    node[last] = value
    return body


@dataclass
class Request:
    """One generated request (path template filled in)."""

    op: Operation
    path: str
    query: dict[str, str]
    body: Any = None
    raw: bytes | None = None
    content_type: str | None = None
    note: str = ""
    #: the id slots holding another tenant's ids (cross-tenant requests)
    foreign: list[IdSlot] = field(default_factory=list)
    #: slot -> the kind of the foreign id put there
    foreign_kinds: dict[IdSlot, str] = field(default_factory=dict)

    def describe(self) -> str:
        extra = f" query={self.query}" if self.query else ""
        body = self.raw[:120] if self.raw is not None else self.body
        text = f" body={str(body)[:200]}" if body is not None else ""
        return f"{self.op.method} {self.path}{extra}{text}{' ' + self.note if self.note else ''}"


IdSource = Callable[["IdSlot"], str]


#: Raw bodies for operations whose body the OpenAPI does not describe as JSON.
RAW_BODIES: dict[str, tuple[bytes, str, dict[str, str]]] = {
    "POST /api/v1/imports": (
        b"first_name,last_name,email\nIda,Import,ida-import@example.com\n",
        "text/csv",
        {"entity": "contacts", "filename": "people.csv"},
    ),
}


def build_request(
    op: Operation, ids: IdSource, *, overrides: dict[IdSlot, str] | None = None
) -> Request:
    """A schema-valid request for ``op``; ids from ``ids(kind)``, or ``overrides`` per slot."""
    overrides = overrides or {}
    slots = {s.label(): s for s in op.id_slots()}

    def value_for(slot: IdSlot) -> str:
        if slot in overrides:
            return overrides[slot]
        return ids(slot)

    path = op.path
    for p in op.path_params:
        if p.is_uuid:
            value = value_for(slots[f"path:{p.name}"])
        elif p.name in PARAM_VALUES:
            value = PARAM_VALUES[p.name]
        elif p.schema.get("enum"):
            value = str(p.schema["enum"][0])
        else:
            raise KeyError(f"{op.key}: no value for path parameter {p.name}")
        path = path.replace("{" + p.name + "}", value)
    query: dict[str, str] = {}
    for p in op.query_params:
        if p.required:
            if p.is_uuid:
                query[p.name] = value_for(slots[f"query:{p.name}"])
            else:
                query[p.name] = str(op.spec.example(p.schema, p.name))
    raw = RAW_BODIES.get(op.key)
    if raw is not None:
        data, content_type, extra_query = raw
        return Request(op, path, {**extra_query, **query}, raw=data, content_type=content_type)
    body = op.spec.body_for(op)
    if op.body_schema is not None and op.json_body:
        for slot in op.id_slots():
            if slot.where == "body":
                if (
                    slot.location in op.spec.optional_locations
                    and slot not in overrides
                    and slot.location not in NEEDED_OPTIONAL_IDS.get(op.key, ())
                ):
                    continue
                body = set_at(body, slot.location, value_for(slot))
    content_type = op.body_type if op.body_schema is not None else None
    return Request(op, path, query, body=body, content_type=content_type)
