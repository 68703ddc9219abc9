"""Wire shapes of self-serve sign-up."""

from __future__ import annotations

from typing import Annotated

import msgspec

from crm_identity.sessions.schemas import TokenPair
from crm_identity.tenants.schemas import SLUG_PATTERN, Tenant
from crm_identity.users.schemas import User
from crm_lib.schema_types import ShortText


class SignupRequest(msgspec.Struct, forbid_unknown_fields=True):
    company_name: ShortText
    admin_name: ShortText
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    plan: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,39}$")] = "free"
    slug: Annotated[str, msgspec.Meta(pattern=SLUG_PATTERN, min_length=2, max_length=63)] | None = (
        None
    )


class SignupResponse(msgspec.Struct):
    tenant: Tenant
    user: User
    tokens: TokenPair
    status_url: str
