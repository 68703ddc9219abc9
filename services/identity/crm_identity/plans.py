"""The plan catalogue: seats, API limits, features and per-seat prices.

The defaults below are overridden from settings (``CRM_FREE_PLAN_SEATS``,
``CRM_PRO_SEAT_PRICE_CENTS``, ``CRM_ENTERPRISE_SEAT_PRICE_CENTS`` or the whole
catalogue as JSON in ``CRM_PLAN_CATALOGUE``) by ``configure`` when identity's
components are built. ``PLANS`` is updated in place so importers see the change.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Plan(msgspec.Struct, frozen=True):
    id: str
    name: str
    default_seats: int
    max_seats: int
    requests_per_minute: int
    tenant_requests_per_minute: int
    features: tuple[str, ...] = ()
    # Monthly price per seat in the smallest currency unit; 0 = free (no subscription).
    seat_price_cents: int = 0
    currency: str = "usd"
    interval: str = "month"

    @property
    def paid(self) -> bool:
        return self.seat_price_cents > 0

    @property
    def stripe_plan_id(self) -> str:
        """Deterministic id of the Stripe plan (created on first use)."""
        return f"crm_{self.id}_{self.interval}ly_{self.currency}_{self.seat_price_cents}"


DEFAULT_PLANS: tuple[Plan, ...] = (
    Plan("free", "Free", 2, 2, 600, 1_200),
    Plan("pro", "Pro", 5, 500, 3_000, 6_000, ("webhooks", "api_keys"), 2_900),
    Plan(
        "enterprise",
        "Enterprise",
        20,
        10_000,
        10_000,
        30_000,
        ("webhooks", "api_keys", "sso"),
        7_900,
    ),
)

PLANS: dict[str, Plan] = {p.id: p for p in DEFAULT_PLANS}


def build_catalogue(settings: Any) -> dict[str, Plan]:
    """The catalogue for these settings (``IdentitySettings``)."""
    override = getattr(settings, "plan_catalogue", None)
    if override:
        plans = [msgspec.convert(p, Plan) for p in override]
        if not any(p.id == "free" for p in plans):
            raise ValueError("CRM_PLAN_CATALOGUE must contain a 'free' plan")
        return {p.id: p for p in plans}
    currency = getattr(settings, "stripe_currency", "usd")
    free_seats = getattr(settings, "free_plan_seats", 2)
    prices = {
        "pro": getattr(settings, "pro_seat_price_cents", 2_900),
        "enterprise": getattr(settings, "enterprise_seat_price_cents", 7_900),
    }
    out: dict[str, Plan] = {}
    for plan in DEFAULT_PLANS:
        if plan.id == "free":
            plan = msgspec.structs.replace(plan, default_seats=free_seats, max_seats=free_seats)
        else:
            plan = msgspec.structs.replace(plan, seat_price_cents=prices[plan.id])
        out[plan.id] = msgspec.structs.replace(plan, currency=currency)
    return out


def configure(settings: Any) -> None:
    catalogue = build_catalogue(settings)
    PLANS.clear()
    PLANS.update(catalogue)


def get_plan(plan_id: str) -> Plan:
    return PLANS.get(plan_id, PLANS["free"])
