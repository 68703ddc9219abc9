"""Reusable msgspec field types for request schemas."""

from __future__ import annotations

from typing import Annotated

import msgspec

#: At least one non-space character and no NUL (PostgreSQL cannot store it in text).
NON_BLANK = r"^(?=[\s\S]*\S)[^\x00]*$"

#: A name-like field: 1-200 characters, not blank.
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NON_BLANK)]
