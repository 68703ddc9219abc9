"""What identity's public controllers share: the base path, no-store answers, user-only checks."""

from __future__ import annotations

from litestar.datastructures import CacheControlHeader

from crm_lib.auth import Principal
from crm_lib.http import ProblemError

API = "/api/v1"
# Answers carrying a secret shown once (tokens, new keys, client secrets): no cache and no
# idempotency replay store may keep them (the gateway's IdempotencyLayer honours it).
NO_STORE = CacheControlHeader(no_store=True)


def user_only(principal: Principal) -> None:
    if principal.kind != "user":
        raise ProblemError(403, "This endpoint is for signed-in users, not API credentials.")
