"""Finds the service definitions by name (``crm_<name>.app.SERVICE``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from crm_lib.settings import SERVICE_NAMES

if TYPE_CHECKING:
    from crm_lib.service import ServiceDefinition


def load_service(name: str) -> ServiceDefinition:
    if name not in SERVICE_NAMES:
        raise KeyError(f"unknown service {name!r}; expected one of {', '.join(SERVICE_NAMES)}")
    module = importlib.import_module(f"crm_{name}.app")
    return module.SERVICE  # type: ignore[no-any-return]


def all_services() -> list[ServiceDefinition]:
    return [load_service(name) for name in SERVICE_NAMES]
