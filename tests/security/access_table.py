"""``docs/access.yaml``: who may call which operation (see ``docs/access.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TABLE_PATH = Path(__file__).resolve().parents[2] / "docs" / "access.yaml"
ROLES = ("owner", "admin", "sales_manager", "sales_rep", "marketer", "support_agent", "viewer")
#: ``scope`` values that are not a scope name
ANY_TOKEN = "any"


@dataclass(frozen=True)
class Rule:
    key: str  # "METHOD /path"
    roles: frozenset[str]
    scope: str | None  # a scope, "any" (every API credential), or None (users only)
    anonymous: bool
    denied: int  # what a denied user / credential gets (403, or 404 where existence is hidden)
    note: str

    def allows_role(self, role: str) -> bool:
        return self.anonymous or role in self.roles


def load_table(path: Path = TABLE_PATH) -> dict[str, Rule]:
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    groups: dict[str, list[str]] = raw.get("groups", {})
    defaults: dict[str, Any] = raw.get("defaults", {})
    out: dict[str, Rule] = {}
    for key, entry in raw["operations"].items():
        entry = {**defaults, **(entry or {})}
        roles = entry.get("roles", [])
        if isinstance(roles, str):
            roles = groups[roles]
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"{key}: unknown roles {sorted(unknown)}")
        method, _, route = key.partition(" ")
        out[key] = Rule(
            key=f"{method.upper()} {route}",
            roles=frozenset(roles),
            scope=entry.get("scope"),
            anonymous=bool(entry.get("anonymous", False)),
            denied=int(entry.get("denied", 403)),
            note=str(entry.get("note", "")),
        )
    return out


def scopes_with(scope: str) -> tuple[str, ...]:
    """The smallest API-credential scope list granting ``scope`` (names must be grantable:
    ``<resource>:read|write|*``; ``contacts:admin`` is only granted by ``contacts:*``)."""
    resource, _, action = scope.partition(":")
    if action in ("read", "write"):
        return (scope,)
    return (f"{resource}:*",)


def scopes_without(scope: str | None) -> tuple[str, ...]:
    """A credential that has scopes, just not one that grants ``scope``."""
    if scope is None or scope == ANY_TOKEN:
        return ("*",)
    resource, _, action = scope.partition(":")
    if action == "write":
        return (f"{resource}:read",)
    if action not in ("read", "write"):
        return (f"{resource}:read", f"{resource}:write")
    other = "users" if resource != "users" else "contacts"
    return (f"{other}:*",)
