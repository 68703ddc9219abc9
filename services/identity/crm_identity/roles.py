"""Roles of a tenant (PRODUCT.md) and who may manage whom."""

from __future__ import annotations

from crm_lib.http import ProblemError

ROLES: tuple[str, ...] = (
    "owner",
    "admin",
    "sales_manager",
    "sales_rep",
    "marketer",
    "support_agent",
    "viewer",
)
MANAGERS: tuple[str, ...] = ("owner", "admin")


def validate_roles(roles: list[str], *, field: str = "roles") -> list[str]:
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ProblemError(
            422,
            "Roles must be a non-empty list of: " + ", ".join(ROLES) + ".",
            title="Validation failed",
            errors=[
                {
                    "field": field,
                    "message": f"unknown role(s): {', '.join(unknown)}"
                    if unknown
                    else "at least one role is required",
                }
            ],
        )
    return sorted(set(roles), key=ROLES.index)


def ensure_may_grant(actor_roles: frozenset[str], roles: list[str]) -> None:
    """Only owners hand out (or take away) the owner role."""
    if "owner" in roles and "owner" not in actor_roles:
        raise ProblemError(403, "Only an owner can grant or remove the owner role.")
