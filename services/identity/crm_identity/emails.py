"""Email address validation and normalisation."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from crm_lib.http import ProblemError


def normalize_email(value: str, *, field: str = "email") -> str:
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ProblemError(
            422,
            "The email address is not valid.",
            title="Validation failed",
            errors=[{"field": field, "message": str(exc)}],
        ) from exc
    return result.normalized.lower()
