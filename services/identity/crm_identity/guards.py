"""Guards for identity's internal endpoints."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from crm_identity.settings import IdentitySettings
from crm_lib.http import ProblemError


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else ""


def _matches(token: str, secret: Any) -> bool:
    expected = secret.get_secret_value() if secret is not None else ""
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def operator_guard(connection: ASGIConnection[Any, Any, Any, Any], _h: BaseRouteHandler) -> None:
    settings: IdentitySettings = connection.app.state.settings
    if settings.operator_token is None:
        raise ProblemError(403, "Operator endpoints are disabled (CRM_OPERATOR_TOKEN unset).")
    if not _matches(_bearer(connection), settings.operator_token):
        raise ProblemError(
            401, "A valid operator token is required.", headers={"WWW-Authenticate": "Bearer"}
        )


def internal_guard(connection: ASGIConnection[Any, Any, Any, Any], _h: BaseRouteHandler) -> None:
    """Platform processes (the gateway) or operators."""
    settings: IdentitySettings = connection.app.state.settings
    token = _bearer(connection)
    if not (_matches(token, settings.internal_token) or _matches(token, settings.operator_token)):
        raise ProblemError(
            401, "A valid internal token is required.", headers={"WWW-Authenticate": "Bearer"}
        )
