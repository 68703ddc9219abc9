"""Validation of custom field values (every write) and their typed SQL expressions.

Stored shapes in the record's ``custom_fields`` JSONB: text, select, email, url and
date (``YYYY-MM-DD``) as strings, number as a JSON number, boolean as a JSON bool,
multi-select as an array of strings, currency as ``{"amount": n, "currency": "EUR"}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlsplit

EMAIL_RE = re.compile(
    r"^[^@\s\x00]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
TEXT_MAX = 10_000
#: Largest magnitude a number field holds (keeps JSON and numeric casts exact enough).
NUMBER_LIMIT = 1e15


@dataclass(frozen=True)
class FieldSpec:
    """What validation needs of a definition (decoupled from the ORM row)."""

    key: str
    type: str
    required: bool = False
    options: tuple[str, ...] = ()
    constraints: Mapping[str, Any] = field(default_factory=dict)
    sensitive: bool = False
    archived: bool = False
    readable_by: tuple[str, ...] = ()


class FieldErrors(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _bounds(value: float, spec: FieldSpec) -> str | None:
    lo, hi = spec.constraints.get("min"), spec.constraints.get("max")
    if isinstance(lo, (int, float)) and value < lo:
        return f"must be at least {lo}"
    if isinstance(hi, (int, float)) and value > hi:
        return f"must be at most {hi}"
    return None


def _number(value: Any, spec: FieldSpec) -> tuple[Any, str | None]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, "must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        return None, "must be a finite number"
    if abs(value) > NUMBER_LIMIT:
        return None, f"must be within ±{NUMBER_LIMIT:.0e}"
    if spec.constraints.get("integer") and value != int(value):
        return None, "must be a whole number"
    if isinstance(value, float) and value.is_integer() and spec.constraints.get("integer"):
        value = int(value)
    return value, _bounds(value, spec)


def _text(value: Any, spec: FieldSpec) -> tuple[Any, str | None]:
    if not isinstance(value, str):
        return None, "must be a string"
    if "\x00" in value:
        return None, "must not contain NUL characters"
    lo, hi = spec.constraints.get("min"), spec.constraints.get("max")
    hi_len = int(hi) if isinstance(hi, (int, float)) else TEXT_MAX
    if len(value) > min(hi_len, TEXT_MAX):
        return None, f"must be at most {min(hi_len, TEXT_MAX)} characters"
    if isinstance(lo, (int, float)) and len(value) < lo:
        return None, f"must be at least {int(lo)} characters"
    return value, None


def _date(value: Any, spec: FieldSpec) -> tuple[Any, str | None]:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return None, "must be a date (YYYY-MM-DD)"
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        return None, "must be a valid calendar date"
    lo, hi = spec.constraints.get("min"), spec.constraints.get("max")
    if isinstance(lo, str) and value < lo:
        return None, f"must be on or after {lo}"
    if isinstance(hi, str) and value > hi:
        return None, f"must be on or before {hi}"
    return parsed.isoformat(), None


def _boolean(value: Any, _spec: FieldSpec) -> tuple[Any, str | None]:
    if not isinstance(value, bool):
        return None, "must be true or false"
    return value, None


def _single(value: Any, spec: FieldSpec) -> tuple[Any, str | None]:
    if not isinstance(value, str) or value not in spec.options:
        return None, "must be one of: " + ", ".join(spec.options[:20])
    return value, None


def _multi(value: Any, spec: FieldSpec) -> tuple[Any, str | None]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None, "must be a list of options"
    unknown = [v for v in value if v not in spec.options]
    if unknown:
        return None, "unknown option(s): " + ", ".join(unknown[:10])
    # Keep the definition's order, drop repeats.
    chosen = set(value)
    return [o for o in spec.options if o in chosen], None


def _email(value: Any, _spec: FieldSpec) -> tuple[Any, str | None]:
    if not isinstance(value, str) or len(value) > 320 or not EMAIL_RE.match(value):
        return None, "must be an email address"
    return value.lower(), None


def _url(value: Any, _spec: FieldSpec) -> tuple[Any, str | None]:
    if not isinstance(value, str) or len(value) > 2048 or any(c.isspace() for c in value):
        return None, "must be an http(s) URL"
    try:
        parts = urlsplit(value)
    except ValueError:
        return None, "must be an http(s) URL"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None, "must be an http(s) URL"
    return value, None


def _currency(value: Any, spec: FieldSpec) -> tuple[Any, str | None]:
    default = spec.constraints.get("currency")
    if isinstance(value, Mapping):
        amount, code = value.get("amount"), value.get("currency", default)
        if set(value) - {"amount", "currency"}:
            return None, "takes only amount and currency"
    else:
        amount, code = value, default
    if not isinstance(code, str) or not CURRENCY_RE.match(code):
        return None, "needs a currency (ISO 4217 code such as EUR)"
    number, problem = _number(amount, FieldSpec(spec.key, "number", constraints=spec.constraints))
    if problem:
        return None, "amount " + problem
    return {
        "amount": round(number, 4) if isinstance(number, float) else number,
        "currency": code,
    }, None


VALIDATORS = {
    "text": _text,
    "number": _number,
    "date": _date,
    "boolean": _boolean,
    "single_select": _single,
    "multi_select": _multi,
    "email": _email,
    "url": _url,
    "currency": _currency,
}


def validate_values(
    specs: Mapping[str, FieldSpec],
    values: Mapping[str, Any],
    *,
    creating: bool,
    prefix: str = "custom_fields",
) -> dict[str, Any]:
    """Normalised values for ``values`` (``None`` clears a field); raises ``FieldErrors``.

    On create every required field must be present; on update a required field can
    not be cleared.
    """
    errors: list[dict[str, str]] = []
    clean: dict[str, Any] = {}
    for key, value in values.items():
        spec = specs.get(key)
        where = f"{prefix}.{key}"
        if spec is None or spec.archived:
            errors.append({"field": where, "message": "no such custom field"})
            continue
        if value is None:
            if spec.required:
                errors.append({"field": where, "message": "is required"})
            else:
                clean[key] = None
            continue
        normalised, problem = VALIDATORS[spec.type](value, spec)
        if problem:
            errors.append({"field": where, "message": problem})
        else:
            clean[key] = normalised
    if creating:
        for key, spec in specs.items():
            if (
                spec.required
                and not spec.archived
                and values.get(key) is None
                and not any(e["field"] == f"{prefix}.{key}" for e in errors)
            ):
                errors.append({"field": f"{prefix}.{key}", "message": "is required"})
    if errors:
        raise FieldErrors(errors)
    return clean


def sort_key_type(spec: FieldSpec) -> str:
    """How a field's stored JSON compares in SQL: numeric, boolean or text."""
    if spec.type in ("number", "currency"):
        return "numeric"
    if spec.type == "boolean":
        return "boolean"
    return "text"


def coerce_filter_value(spec: FieldSpec, raw: str) -> Any:
    """A query-string value as the field's comparable type (``ValueError`` if it is not)."""
    kind = sort_key_type(spec)
    if kind == "numeric":
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        return number
    if kind == "boolean":
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ValueError("not a boolean")
    if spec.type == "date":
        return date.fromisoformat(raw).isoformat()
    return raw
