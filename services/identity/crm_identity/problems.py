"""OpenAPI descriptions of problem documents (RFC 9457) identity answers with.

Only the shape is described here; the answers come from ``crm_lib.http.ProblemError``.
"""

from __future__ import annotations

from crm_lib.http import Problem
from crm_lib.http import problem_spec as problem


class OAuthProblem(Problem, omit_defaults=True):
    #: The RFC 6749 §5.2 error code (RFC 7009 revocation).
    error: str | None = None


INVALID_LOGIN = problem(
    "Login failed: unknown email, wrong password, inactive user, unknown `tenant` or "
    "throttled — always the same problem (`type …/invalid-login`); a throttled attempt "
    "carries `Retry-After` (seconds)."
)
TENANT_CLOSED = problem("The right password, but the tenant is being deleted or deleted.")
TOO_MANY_FROM_ADDRESS = problem(
    "Too many requests from this client address; `Retry-After` says when to try again."
)
VALIDATION = problem("Validation failed (`errors` lists each field and what is wrong).")
SIGNUP_RACE = problem("A concurrent sign-up took the same slug in the same instant; retry.")
NOT_YOURS = problem(
    "`token` is missing, or the token was issued to another user, client or key of this "
    "tenant (`error: unauthorized_client`; it is not revoked).",
    OAuthProblem,
)
FORBIDDEN = problem("Forbidden: the role or the token's scopes do not allow this.")
