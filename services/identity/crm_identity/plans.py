"""The plan catalogue: seats and API limits per plan (prices come with billing)."""

from __future__ import annotations

import msgspec


class Plan(msgspec.Struct, frozen=True):
    id: str
    name: str
    default_seats: int
    max_seats: int
    requests_per_minute: int
    tenant_requests_per_minute: int
    features: tuple[str, ...] = ()


PLANS: dict[str, Plan] = {
    "free": Plan("free", "Free", 3, 3, 600, 1_200),
    "pro": Plan("pro", "Pro", 5, 500, 3_000, 6_000, ("webhooks", "api_keys")),
    "enterprise": Plan(
        "enterprise", "Enterprise", 20, 10_000, 10_000, 30_000, ("webhooks", "api_keys", "sso")
    ),
}


def get_plan(plan_id: str) -> Plan:
    return PLANS.get(plan_id, PLANS["free"])
