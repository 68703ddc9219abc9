"""Cursor pagination as in PRODUCT.md: ``?limit=&cursor=`` → ``{"data": [...], "next_cursor"}``.

Cursors are opaque (URL-safe base64 of a small JSON array holding the sort key
of the last row); a malformed one is a 400 problem, never a 500.
"""

from __future__ import annotations

import base64
from typing import Any, Generic, TypeVar

import msgspec

from crm_lib.http import ProblemError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T]):
    data: list[T]
    next_cursor: str | None


def encode_cursor(*values: Any) -> str:
    raw = msgspec.json.encode(list(values))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> tuple[Any, ...]:
    """Decode a cursor whose values must convert to ``types`` (in order)."""
    try:
        if len(cursor) > 1024:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = msgspec.json.decode(raw)
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("shape")
        return tuple(
            msgspec.convert(v, t, strict=False) for v, t in zip(values, types, strict=True)
        )
    except (ValueError, TypeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProblemError(
            400,
            "Malformed cursor.",
            title="Bad Request",
            errors=[{"field": "cursor", "message": "not a cursor returned by this API"}],
        ) from exc


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1 or limit > MAX_LIMIT:
        raise ProblemError(
            422,
            f"limit must be between 1 and {MAX_LIMIT}.",
            title="Validation failed",
            errors=[{"field": "limit", "message": f"must be between 1 and {MAX_LIMIT}"}],
        )
    return limit
