"""OpenAPI descriptions of the problem documents (RFC 9457) this service answers with.

Only the shape is described here; the answers come from ``crm_lib.http.ProblemError``.
"""

from __future__ import annotations

import uuid

import msgspec

from crm_lib.http import Problem
from crm_lib.http import problem_spec as problem


class DuplicateRef(msgspec.Struct):
    #: Null for a record the caller cannot see: its id (and name) are never told.
    id: uuid.UUID | None
    reason: str


class DuplicateProblem(Problem, omit_defaults=True):
    duplicates: list[DuplicateRef] | None = None


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
