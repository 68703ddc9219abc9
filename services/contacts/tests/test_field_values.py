"""Property tests: custom field validation and list-query parsing never misbehave."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql

from crm_contacts.contacts.service import CONTACT
from crm_contacts.fields.values import FieldErrors, FieldSpec, validate_values
from crm_contacts.records.query import RecordQueryBuilder, parse_list_query
from crm_lib.http import ProblemError

SPECS = {
    "score": FieldSpec("score", "number", constraints={"min": 0, "max": 100}),
    "count": FieldSpec("count", "number", constraints={"integer": True}),
    "note": FieldSpec("note", "text", constraints={"max": 50}),
    "renewal": FieldSpec("renewal", "date", constraints={"min": "2020-01-01"}),
    "active": FieldSpec("active", "boolean"),
    "tier": FieldSpec("tier", "single_select", options=("gold", "silver")),
    "langs": FieldSpec("langs", "multi_select", options=("en", "de", "fr")),
    "mail": FieldSpec("mail", "email"),
    "site": FieldSpec("site", "url"),
    "arr": FieldSpec("arr", "currency", constraints={"currency": "EUR"}),
    "must": FieldSpec("must", "text", required=True),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=60),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(sorted(SPECS)) | st.text(max_size=10), json_values, max_size=6)
)
def test_any_input_is_accepted_normalised_or_refused_with_field_errors(
    values: dict[str, Any],
) -> None:
    try:
        clean = validate_values(SPECS, values, creating=False)
    except FieldErrors as exc:
        assert exc.errors and all(e["field"].startswith("custom_fields.") for e in exc.errors)
        return
    # Accepted values are stable: validating the normalised form changes nothing.
    assert validate_values(SPECS, clean, creating=False) == clean
    for key, value in clean.items():
        if value is None:
            continue
        kind = SPECS[key].type
        if kind == "number":
            assert not isinstance(value, bool) and math.isfinite(value)
        if key == "score":
            assert 0 <= value <= 100
        if kind == "multi_select":
            assert len(set(value)) == len(value) and set(value) <= {"en", "de", "fr"}
        if kind == "currency":
            assert set(value) == {"amount", "currency"}


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_number_bounds_are_exact(value: float) -> None:
    try:
        validate_values(SPECS, {"score": value}, creating=False)
        assert 0 <= value <= 100
    except FieldErrors:
        assert not 0 <= value <= 100


def test_required_fields_on_create_and_clearing() -> None:
    try:
        validate_values(SPECS, {}, creating=True)
        raise AssertionError("missing required field accepted")
    except FieldErrors as exc:
        assert exc.errors == [{"field": "custom_fields.must", "message": "is required"}]
    try:
        validate_values(SPECS, {"must": None}, creating=False)
        raise AssertionError("required field cleared")
    except FieldErrors:
        pass
    assert validate_values(SPECS, {"note": None}, creating=False) == {"note": None}


query_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "q",
                "sort",
                "fields",
                "tag",
                "tag__in",
                "owner_id",
                "created_after",
                "email__in",
                "cf.score__gte",
                "cf.langs",
                "cf.tier__contains",
                "cf.renewal__lt",
                "cf.nope",
                "lifecycle_stage__ne",
                "updated_at__lte",
                "first_name__contains",
                "phone__exists",
            ]
        )
        | query_text,
        st.lists(query_text, min_size=1, max_size=2),
        max_size=5,
    )
)
def test_list_queries_compile_or_answer_a_problem(params: dict[str, list[str]]) -> None:
    specs = {k: v for k, v in SPECS.items()}
    try:
        query = parse_list_query(params)
        builder = RecordQueryBuilder(CONTACT.model, CONTACT.columns, specs, "-updated_at", None)
        conditions = [builder.condition(f, op, raw) for f, op, raw in query.filters]
        _name, expr, _desc = builder.sort_expr(query.sort)
        for condition in [*conditions, expr]:
            condition.compile(dialect=postgresql.dialect())
    except ProblemError as exc:
        assert 400 <= exc.status_code < 500
