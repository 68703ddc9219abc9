"""Billing: trial, paid subscription against localstripe, seats, plans, local mode."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from crm_dev.testing import RunningPlatform, SmtpSink, eventually
from crm_identity.billing.models import BillingAccount
from crm_identity.billing.service import BillingService
from crm_identity.components import identity_of
from crm_identity.models import Tenant
from crm_lib.platform_tables import OutboxRow
from services.identity.tests.conftest import STRONG_PASSWORD, LocalStripe, SignedUp, signup


async def state(platform: RunningPlatform, tenant_id: str) -> tuple[Tenant, BillingAccount]:
    async with platform.runtime("identity").db.platform_session() as session:
        tenant = await session.get(Tenant, uuid.UUID(tenant_id))
        account = await session.get(BillingAccount, uuid.UUID(tenant_id))
    assert tenant is not None and account is not None
    return tenant, account


async def events(platform: RunningPlatform, tenant_id: str, event_type: str) -> int:
    async with platform.runtime("identity").db.platform_session() as session:
        return int(
            (
                await session.execute(
                    select(func.count()).where(
                        OutboxRow.tenant_id == uuid.UUID(tenant_id),
                        OutboxRow.event_type == event_type,
                    )
                )
            ).scalar_one()
        )


async def wait_status(api: httpx.AsyncClient, owner: SignedUp, status: str) -> None:
    async def probe() -> bool:
        r = await api.get("/api/v1/tenant", headers=owner.auth)
        return r.status_code == 200 and r.json()["tenant"]["status"] == status

    await eventually(probe)


async def invite_and_accept(
    api: httpx.AsyncClient, smtp: SmtpSink, owner: SignedUp, role: str = "sales_rep"
) -> tuple[str, dict[str, str]]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    r = await api.post(
        "/api/v1/invitations", json={"email": email, "roles": [role]}, headers=owner.auth
    )
    assert r.status_code == 201, r.text
    messages = await eventually(lambda: smtp.to(email))
    token = re.search(r"token=([A-Za-z0-9.]+)", messages[-1].get_content()).group(1)  # type: ignore[union-attr]
    accepted = await api.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": role.title(), "password": STRONG_PASSWORD},
    )
    assert accepted.status_code == 201, accepted.text
    return accepted.json()["user_id"], {
        "Authorization": f"Bearer {accepted.json()['access_token']}"
    }


def problem(r: httpx.Response, status: int, type_suffix: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if type_suffix:
        assert r.json()["type"].endswith(type_suffix), r.json()


async def test_plans_catalogue_is_public_and_configured(identity_api: httpx.AsyncClient) -> None:
    plans = {p["id"]: p for p in (await identity_api.get("/api/v1/plans")).json()["data"]}
    assert plans["free"]["max_seats"] == 2 and plans["free"]["seat_price_cents"] == 0
    assert plans["pro"]["seat_price_cents"] > 0 and "webhooks" in plans["pro"]["features"]
    assert "sso" in plans["enterprise"]["features"]
    assert plans["enterprise"]["requests_per_minute"] > plans["free"]["requests_per_minute"]


async def test_stripe_trial_to_paid_seats_and_cancel(
    identity_api: httpx.AsyncClient, platform: RunningPlatform, stripe_mode: LocalStripe
) -> None:
    owner = await signup(identity_api, plan="pro")
    await wait_status(identity_api, owner, "trialing")
    billing = (await identity_api.get("/api/v1/billing", headers=owner.auth)).json()
    assert billing["mode"] == "stripe" and billing["trial_ends_at"] is not None
    assert billing["subscription"]["status"] == "none"

    # No payment method stored yet: the direct path says so (Checkout is the other way).
    problem(
        await identity_api.post(
            "/api/v1/billing/subscription", json={"plan": "pro", "seats": 3}, headers=owner.auth
        ),
        409,
        "payment-method-required",
    )
    started = await identity_api.post(
        "/api/v1/billing/subscription",
        json={"plan": "pro", "seats": 3, "payment_method": "pm_card_visa"},
        headers=owner.auth,
    )
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["tenant_status"] == "active" and body["plan"] == "pro"
    assert body["seats"]["limit"] == 3 and body["subscription"]["status"] == "active"
    sub_id = body["subscription"]["id"]
    sub = await stripe_mode.subscription(sub_id)
    assert sub["items"]["data"][0]["quantity"] == 3
    tenant, account = await state(platform, owner.tenant_id)
    assert tenant.status == "active" and account.stripe_customer_id == sub["customer"]
    assert (await identity_api.get("/api/v1/tenant", headers=owner.auth)).json()["tenant"][
        "status"
    ] == "active"
    # A second start is refused: change the plan or the seats instead.
    problem(
        await identity_api.post(
            "/api/v1/billing/subscription", json={"plan": "pro"}, headers=owner.auth
        ),
        409,
    )

    # Add a seat: Stripe follows asynchronously (outbox -> consumer).
    r = await identity_api.put("/api/v1/billing/seats", json={"seats": 4}, headers=owner.auth)
    assert r.status_code == 200, r.text
    assert r.json()["seats"]["limit"] == 4

    async def quantity(n: int) -> bool:
        return (await stripe_mode.subscription(sub_id))["items"]["data"][0]["quantity"] == n

    await eventually(lambda: quantity(4))
    # The retried request changes nothing and sends nothing.
    before = await events(platform, owner.tenant_id, "identity.billing.seats_changed")
    again = await identity_api.put("/api/v1/billing/seats", json={"seats": 4}, headers=owner.auth)
    assert again.status_code == 200 and again.json()["seats"]["limit"] == 4
    assert await events(platform, owner.tenant_id, "identity.billing.seats_changed") == before
    # A redelivered sync (same sequence, same idempotency key) does not add a seat either.
    _tenant, account = await state(platform, owner.tenant_id)
    assert account.synced_sequence == account.seat_sequence and account.synced_quantity == 4
    ident = identity_of(platform.runtime("identity"))
    async with platform.runtime("identity").db.tenant_session(owner.tenant_id) as session:
        await BillingService(session, ident.settings, ident.billing).sync_to_provider(
            uuid.UUID(owner.tenant_id), account.seat_sequence
        )
    assert await quantity(4)
    assert (await identity_api.get("/api/v1/billing", headers=owner.auth)).json()[
        "sync_pending"
    ] is False

    # Remove a seat.
    r = await identity_api.put("/api/v1/billing/seats", json={"seats": 3}, headers=owner.auth)
    assert r.status_code == 200, r.text
    await eventually(lambda: quantity(3))

    # Upgrade the plan: the same item moves to the enterprise plan, quantity kept.
    r = await identity_api.patch(
        "/api/v1/billing/subscription", json={"plan": "enterprise"}, headers=owner.auth
    )
    assert r.status_code == 200 and r.json()["plan"] == "enterprise", r.text

    async def on_enterprise() -> bool:
        item = (await stripe_mode.subscription(sub_id))["items"]["data"][0]
        return item["plan"]["metadata"]["crm_plan"] == "enterprise" and item["quantity"] == 3

    await eventually(on_enterprise)

    invoices = await identity_api.get("/api/v1/billing/invoices", headers=owner.auth)
    assert invoices.status_code == 200 and invoices.json()["data"], invoices.text
    assert invoices.json()["data"][0]["amount_due"] > 0

    # Cancel at period end, then change of mind.
    r = await identity_api.post("/api/v1/billing/subscription/cancel", headers=owner.auth)
    assert r.status_code == 200 and r.json()["subscription"]["cancel_at_period_end"] is True
    assert (await stripe_mode.subscription(sub_id))["cancel_at_period_end"] is True
    r = await identity_api.post("/api/v1/billing/subscription/reactivate", headers=owner.auth)
    assert r.status_code == 200 and r.json()["subscription"]["cancel_at_period_end"] is False
    assert (await stripe_mode.subscription(sub_id))["cancel_at_period_end"] is False
    r = await identity_api.post("/api/v1/billing/subscription/cancel", headers=owner.auth)
    assert (await stripe_mode.subscription(sub_id))["cancel_at_period_end"] is True
    assert r.json()["tenant_status"] == "active"


async def test_local_mode_is_usable_without_stripe(
    identity_api: httpx.AsyncClient, platform: RunningPlatform
) -> None:
    owner = await signup(identity_api, plan="pro")
    await wait_status(identity_api, owner, "trialing")
    billing = (await identity_api.get("/api/v1/billing", headers=owner.auth)).json()
    assert billing["mode"] == "local"
    checkout = await identity_api.post(
        "/api/v1/billing/checkout", json={"plan": "pro", "seats": 3}, headers=owner.auth
    )
    assert checkout.status_code == 201, checkout.text
    url = checkout.json()["url"]
    assert url.startswith(identity_of(platform.runtime("identity")).settings.app_base_url)
    assert "session_id=cs_local_" in url
    billing = (await identity_api.get("/api/v1/billing", headers=owner.auth)).json()
    assert billing["tenant_status"] == "active" and billing["seats"]["limit"] == 3
    assert billing["subscription"]["status"] == "active"
    assert billing["subscription"]["id"].startswith("sub_local_")
    portal = await identity_api.post("/api/v1/billing/portal", headers=owner.auth)
    assert portal.status_code == 201 and "/settings/billing" in portal.json()["url"]
    assert (await identity_api.get("/api/v1/billing/invoices", headers=owner.auth)).json() == {
        "data": [],
        "next_cursor": None,
    }
    r = await identity_api.put("/api/v1/billing/seats", json={"seats": 5}, headers=owner.auth)
    assert r.status_code == 200 and r.json()["seats"]["limit"] == 5

    async def synced() -> bool:
        return not (await identity_api.get("/api/v1/billing", headers=owner.auth)).json()[
            "sync_pending"
        ]

    await eventually(synced)


async def test_seat_enforcement_invitations_reactivation_and_downgrade(
    identity_api: httpx.AsyncClient, smtp_server: SmtpSink, platform: RunningPlatform
) -> None:
    owner = await signup(identity_api)  # free: 2 seats
    await wait_status(identity_api, owner, "active")
    problem(
        await identity_api.put("/api/v1/billing/seats", json={"seats": 3}, headers=owner.auth),
        409,
        "plan-seat-limit",
    )
    # Upgrade (local mode: paid at once) with 3 seats.
    r = await identity_api.post(
        "/api/v1/billing/subscription", json={"plan": "pro", "seats": 3}, headers=owner.auth
    )
    assert r.status_code == 201, r.text
    rep_id, _rep_auth = await invite_and_accept(identity_api, smtp_server, owner)
    _viewer_id, _ = await invite_and_accept(identity_api, smtp_server, owner, "viewer")
    # All 3 seats are taken by active users: no invitation, no seat count below 3.
    refused = await identity_api.post(
        "/api/v1/invitations",
        json={"email": f"x-{uuid.uuid4().hex[:6]}@example.com", "roles": ["viewer"]},
        headers=owner.auth,
    )
    problem(refused, 409, "seats-exhausted")
    problem(
        await identity_api.put("/api/v1/billing/seats", json={"seats": 2}, headers=owner.auth),
        409,
        "seats-in-use",
    )
    # Downgrading to the free plan (2 seats) is refused while 3 people use the tenant.
    problem(
        await identity_api.patch(
            "/api/v1/billing/subscription", json={"plan": "free"}, headers=owner.auth
        ),
        409,
        "plan-seat-limit",
    )
    # Deactivating frees a seat; an invitation takes it; reactivation then finds none.
    r = await identity_api.post(f"/api/v1/users/{rep_id}/deactivate", headers=owner.auth)
    assert r.status_code == 200, r.text
    r = await identity_api.post(
        "/api/v1/invitations",
        json={"email": f"y-{uuid.uuid4().hex[:6]}@example.com", "roles": ["viewer"]},
        headers=owner.auth,
    )
    assert r.status_code == 201, r.text
    problem(
        await identity_api.post(f"/api/v1/users/{rep_id}/reactivate", headers=owner.auth),
        409,
        "seats-exhausted",
    )
    # Buying a seat makes room for the reactivation.
    r = await identity_api.put("/api/v1/billing/seats", json={"seats": 4}, headers=owner.auth)
    assert r.status_code == 200, r.text
    r = await identity_api.post(f"/api/v1/users/{rep_id}/reactivate", headers=owner.auth)
    assert r.status_code == 200, r.text
    # Plan downgrade within the limits works: enterprise -> pro keeps the 4 seats.
    r = await identity_api.patch(
        "/api/v1/billing/subscription", json={"plan": "enterprise"}, headers=owner.auth
    )
    assert r.status_code == 200 and r.json()["plan"] == "enterprise"
    r = await identity_api.patch(
        "/api/v1/billing/subscription", json={"plan": "pro", "seats": 4}, headers=owner.auth
    )
    assert r.status_code == 200 and r.json()["plan"] == "pro" and r.json()["seats"]["limit"] == 4
    tenant, _account = await state(platform, owner.tenant_id)
    assert tenant.plan == "pro" and tenant.seats == 4


async def test_bad_billing_input_is_a_problem_and_writes_nothing(
    identity_api: httpx.AsyncClient, platform: RunningPlatform
) -> None:
    owner = await signup(identity_api)
    await wait_status(identity_api, owner, "active")
    cases: list[tuple[str, str, Any]] = [
        ("PUT", "/api/v1/billing/seats", {"seats": 0}),
        ("PUT", "/api/v1/billing/seats", {"seats": "three"}),
        ("PUT", "/api/v1/billing/seats", {"seats": 2, "extra": True}),
        ("PUT", "/api/v1/billing/seats", [1]),
        ("PUT", "/api/v1/billing/seats", None),
        ("POST", "/api/v1/billing/subscription", {"plan": "platinum"}),
        ("POST", "/api/v1/billing/subscription", {"plan": "free"}),
        ("POST", "/api/v1/billing/subscription", {"plan": "pro", "payment_method": "x y"}),
        ("POST", "/api/v1/billing/subscription", {"plan": "pro", "seats": 10**9}),
        ("POST", "/api/v1/billing/checkout", {"plan": "pro", "success_url": "javascript:1"}),
        ("PATCH", "/api/v1/billing/subscription", {"plan": "<script>"}),
        ("POST", "/api/v1/billing/portal", {"return_url": 5}),
    ]
    for method, path, body in cases:
        r = await identity_api.request(method, path, json=body, headers=owner.auth)
        assert 400 <= r.status_code < 500, f"{method} {path} {body}: {r.status_code} {r.text}"
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
    raw = await identity_api.put(
        "/api/v1/billing/seats",
        content=b"{not json",
        headers={**owner.auth, "Content-Type": "application/json"},
    )
    problem(raw, 400)
    tenant, account = await state(platform, owner.tenant_id)
    assert (tenant.plan, tenant.seats, account.seat_sequence) == ("free", 2, 0)
    assert account.stripe_subscription_id is None


async def test_other_tenants_never_see_billing(
    identity_api: httpx.AsyncClient, platform: RunningPlatform
) -> None:
    a = await signup(identity_api)
    b = await signup(identity_api)
    await wait_status(identity_api, a, "active")
    r = await identity_api.post(
        "/api/v1/billing/subscription", json={"plan": "pro", "seats": 2}, headers=a.auth
    )
    assert r.status_code == 201, r.text
    seen_by_b = (await identity_api.get("/api/v1/billing", headers=b.auth)).json()
    assert seen_by_b["plan"] == "free" and seen_by_b["subscription"]["id"] is None
    # B's owner changing "seats" changes B only.
    await wait_status(identity_api, b, "active")
    problem(
        await identity_api.put("/api/v1/billing/seats", json={"seats": 5}, headers=b.auth),
        409,
        "plan-seat-limit",
    )
    tenant_a, _ = await state(platform, a.tenant_id)
    assert tenant_a.seats == 2 and tenant_a.plan == "pro"
