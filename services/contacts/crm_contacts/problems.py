"""OpenAPI descriptions of the problem documents (RFC 9457) this service answers with.

Only the shape is described here; the answers come from ``crm_lib.http.ProblemError``.
"""

from __future__ import annotations

import uuid

import msgspec
from litestar.openapi.datastructures import ResponseSpec

PROBLEM_MEDIA = "application/problem+json"


class FieldError(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    #: Validation problems: what is wrong, field by field.
    errors: list[FieldError] | None = None
    request_id: str | None = None


class DuplicateRef(msgspec.Struct):
    #: Null for a record the caller cannot see: its id (and name) are never told.
    id: uuid.UUID | None
    reason: str


class DuplicateProblem(Problem, omit_defaults=True):
    duplicates: list[DuplicateRef] | None = None


def problem(description: str, container: type[Problem] = Problem) -> ResponseSpec:
    return ResponseSpec(
        data_container=container,
        description=description,
        media_type=PROBLEM_MEDIA,
        generate_examples=False,
    )


SENSITIVE_WRITE = problem(
    "Forbidden: the role may not do this, or the body writes a sensitive custom field the "
    "role cannot read (refused whatever the value; `errors` names the fields)."
)
INVALID = problem("Validation failed (`errors` lists each field and what is wrong).")
DUPLICATE = problem(
    "A duplicate exists (`duplicates`: id and reason; the id is null for one the caller "
    'cannot see: "a duplicate exists that you cannot see").',
    DuplicateProblem,
)
