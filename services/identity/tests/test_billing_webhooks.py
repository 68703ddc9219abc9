"""Stripe webhooks (signed fixtures) and the billing lifecycle, through the real gateway.

The subscription states come from ``localstripe`` for real (a failing renewal makes
the subscription ``past_due``, paying the open invoice makes it ``active``); the
webhook bodies are signed with the SDK's own signing code.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import func, select

from crm_dev.testing import RunningPlatform, SmtpSink, eventually
from crm_identity.billing.handlers import sweep_once
from crm_identity.billing.service import STRIPE_EVENT
from crm_identity.components import identity_of
from crm_lib.platform_tables import InboxRow, OutboxRow
from services.identity.tests.conftest import (
    WEBHOOK_SECRET,
    LocalStripe,
    SignedUp,
    signed_webhook,
    signup,
)
from services.identity.tests.test_billing import problem, state, wait_status

WEBHOOK = "/api/v1/billing/stripe/webhook"


async def send(api: httpx.AsyncClient, event_type: str, obj: dict[str, Any], **kw: Any) -> Any:
    body, headers = signed_webhook(event_type, obj, **kw)
    return await api.post(WEBHOOK, content=body, headers=headers)


async def subscribe(
    api: httpx.AsyncClient, platform: RunningPlatform, seats: int = 2
) -> tuple[SignedUp, str, str]:
    owner = await signup(api, plan="pro")
    await wait_status(api, owner, "trialing")
    r = await api.post(
        "/api/v1/billing/subscription",
        json={"plan": "pro", "seats": seats, "payment_method": "pm_card_visa"},
        headers=owner.auth,
    )
    assert r.status_code == 201, r.text
    _tenant, account = await state(platform, owner.tenant_id)
    assert account.stripe_customer_id and account.stripe_subscription_id
    return owner, account.stripe_subscription_id, account.stripe_customer_id


async def applied(platform: RunningPlatform, tenant_id: str) -> bool:
    """Every Stripe event queued for the tenant has been applied by the consumer."""
    tid = uuid.UUID(tenant_id)
    async with platform.runtime("identity").db.platform_session() as session:
        queued = (
            await session.execute(
                select(func.count()).where(
                    OutboxRow.tenant_id == tid, OutboxRow.event_type == STRIPE_EVENT
                )
            )
        ).scalar_one()
        done = (
            await session.execute(
                select(func.count()).where(
                    InboxRow.tenant_id == tid, InboxRow.event_type == STRIPE_EVENT
                )
            )
        ).scalar_one()
    return bool(queued) and queued == done


async def queued_events(platform: RunningPlatform, tenant_id: str) -> int:
    async with platform.runtime("identity").db.platform_session() as session:
        return int(
            (
                await session.execute(
                    select(func.count()).where(
                        OutboxRow.tenant_id == uuid.UUID(tenant_id),
                        OutboxRow.event_type == STRIPE_EVENT,
                    )
                )
            ).scalar_one()
        )


async def fail_renewal(stripe: LocalStripe, customer: str, sub_id: str) -> str:
    """Stripe's dunning for real: the card now declines and a renewal invoice fails,
    so the subscription is ``past_due``. Returns the open invoice."""
    client = stripe.client
    pm = await client.v1.payment_methods.attach_async(
        "pm_card_chargeCustomerFail", {"customer": customer}
    )
    await client.v1.customers.update_async(
        customer, {"invoice_settings": {"default_payment_method": pm.id}}
    )
    renewal = f"renewal_{uuid.uuid4().hex[:8]}"
    await client.v1.plans.create_async(
        {
            "id": renewal,
            "amount": 50_000,
            "currency": "usd",
            "interval": "year",
            "product": {"name": "renewal"},
            "metadata": {"crm_plan": "pro"},
        }
    )
    sub = await stripe.subscription(sub_id)
    await client.v1.subscriptions.update_async(
        sub_id,
        {"items": [{"id": sub["items"]["data"][0]["id"], "plan": renewal, "quantity": 2}]},
    )
    assert (await stripe.subscription(sub_id))["status"] == "past_due"
    invoices = await client.v1.invoices.list_async({"customer": customer})
    return next(i.id for i in invoices.data if i.status == "open")


async def pay(stripe: LocalStripe, customer: str, invoice_id: str) -> dict[str, Any]:
    client = stripe.client
    pm = await client.v1.payment_methods.attach_async("pm_card_visa", {"customer": customer})
    await client.v1.customers.update_async(
        customer, {"invoice_settings": {"default_payment_method": pm.id}}
    )
    paid = await client.v1.invoices.pay_async(invoice_id)
    assert paid.status == "paid"
    return paid.to_dict()


async def test_signature_staleness_malformed_and_duplicates(
    identity_api: httpx.AsyncClient,
    gateway_api: httpx.AsyncClient,
    platform: RunningPlatform,
    smtp_server: SmtpSink,
    stripe_mode: LocalStripe,
) -> None:
    owner, sub_id, customer = await subscribe(identity_api, platform)
    sub = (await stripe_mode.subscription(sub_id)).to_dict()

    body, headers = signed_webhook("customer.subscription.updated", sub, secret="whsec_wrong")
    problem(await identity_api.post(WEBHOOK, content=body, headers=headers), 400, "invalid-webhook")
    stale = await send(
        identity_api, "customer.subscription.updated", sub, timestamp=int(time.time()) - 3600
    )
    problem(stale, 400, "invalid-webhook")
    body, headers = signed_webhook("customer.subscription.updated", sub)
    problem(
        await identity_api.post(
            WEBHOOK, content=body, headers={"Content-Type": "application/json"}
        ),
        400,
    )
    tampered = body.replace(b'"quantity": 2', b'"quantity": 9')
    assert tampered != body
    problem(await identity_api.post(WEBHOOK, content=tampered, headers=headers), 400)
    # Correctly signed garbage is still refused.
    import stripe

    now = int(time.time())
    for raw in (b"{not json", b'{"id": 5}', b'{"id":"evt_x","type":"x","created":1,"data":[]}'):
        sig = stripe.WebhookSignature._compute_signature(f"{now}.{raw.decode()}", WEBHOOK_SECRET)
        r = await identity_api.post(
            WEBHOOK, content=raw, headers={"Stripe-Signature": f"t={now},v1={sig}"}
        )
        problem(r, 400)
    assert await queued_events(platform, owner.tenant_id) == 0

    # trial_will_end, through the gateway (no bearer token needed): owners are emailed.
    event_id = f"evt_{uuid.uuid4().hex}"
    r = await send(gateway_api, "customer.subscription.trial_will_end", sub, event_id=event_id)
    assert r.status_code == 200 and r.json() == {
        "received": True,
        "duplicate": False,
        "ignored": None,
    }, r.text
    await eventually(
        lambda: [m for m in smtp_server.to(owner.email) if "trial ends soon" in m["Subject"]]
    )
    # The same event again: acknowledged, no second effect.
    again = await send(identity_api, "customer.subscription.trial_will_end", sub, event_id=event_id)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert await queued_events(platform, owner.tenant_id) == 1
    await eventually(lambda: applied(platform, owner.tenant_id))
    assert len([m for m in smtp_server.to(owner.email) if "trial ends soon" in m["Subject"]]) == 1
    # A customer we do not know, and an event type we do not handle: acknowledged, ignored.
    other = await send(identity_api, "invoice.paid", {"id": "in_x", "customer": "cus_unknown"})
    assert other.status_code == 200 and other.json()["ignored"]
    odd = await send(identity_api, "charge.refunded", {"id": "ch_x", "customer": customer})
    assert odd.status_code == 200 and odd.json()["ignored"]


async def test_payment_failed_past_due_suspended_paid_active_through_gateway(
    identity_api: httpx.AsyncClient,
    gateway_api: httpx.AsyncClient,
    platform: RunningPlatform,
    smtp_server: SmtpSink,
    stripe_mode: LocalStripe,
) -> None:
    owner, sub_id, customer = await subscribe(identity_api, platform)
    ident = identity_of(platform.runtime("identity"))
    invoice_id = await fail_renewal(stripe_mode, customer, sub_id)
    invoice = (await stripe_mode.client.v1.invoices.retrieve_async(invoice_id)).to_dict()
    r = await send(gateway_api, "invoice.payment_failed", invoice)
    assert r.status_code == 200, r.text
    await wait_status(identity_api, owner, "past_due")
    await eventually(
        lambda: [m for m in smtp_server.to(owner.email) if "payment failed" in m["Subject"]]
    )
    # past_due keeps full access.
    r = await gateway_api.post("/api/v1/teams", json={"name": "still-open"}, headers=owner.auth)
    assert r.status_code == 201, r.text

    # The grace period runs out: suspended (read-only at the gateway).
    _tenant, account = await state(platform, owner.tenant_id)
    assert account.past_due_since is not None
    later = account.past_due_since + timedelta(days=ident.settings.past_due_grace_days, hours=1)
    moved = await sweep_once(
        platform.runtime("identity").db,
        ident.settings,
        ident.billing,
        now=later,
        only={uuid.UUID(owner.tenant_id)},
    )
    assert moved == {uuid.UUID(owner.tenant_id): "suspended"}

    async def writes_blocked() -> bool:
        r = await gateway_api.post("/api/v1/teams", json={"name": "blocked"}, headers=owner.auth)
        return r.status_code == 403 and r.json()["type"].endswith("tenant-suspended")

    await eventually(writes_blocked)
    assert (await gateway_api.get("/api/v1/users", headers=owner.auth)).status_code == 200
    assert (await gateway_api.get("/api/v1/billing", headers=owner.auth)).status_code == 200

    # The bill is paid: active again at once, writes pass the gateway.
    paid = await pay(stripe_mode, customer, invoice_id)
    r = await send(gateway_api, "invoice.paid", paid)
    assert r.status_code == 200, r.text
    await wait_status(identity_api, owner, "active")

    async def writes_pass() -> bool:
        r = await gateway_api.post(
            "/api/v1/teams", json={"name": f"t-{uuid.uuid4().hex[:6]}"}, headers=owner.auth
        )
        return r.status_code == 201

    await eventually(writes_pass)
    _tenant, account = await state(platform, owner.tenant_id)
    assert account.past_due_since is None and account.suspended_at is None
    assert account.subscription_status == "active"
    # Nothing left for the clocks to do.
    assert (
        await sweep_once(
            platform.runtime("identity").db,
            ident.settings,
            ident.billing,
            now=later + timedelta(days=365),
            only={uuid.UUID(owner.tenant_id)},
        )
        == {}
    )


async def test_out_of_order_updated_after_deleted_never_resurrects(
    identity_api: httpx.AsyncClient, platform: RunningPlatform, stripe_mode: LocalStripe
) -> None:
    owner, sub_id, _customer = await subscribe(identity_api, platform, seats=2)
    live = (await stripe_mode.subscription(sub_id)).to_dict()
    created = int(time.time())
    canceled = (await stripe_mode.client.v1.subscriptions.cancel_async(sub_id)).to_dict()
    assert canceled["status"] == "canceled"
    # Stripe delivers the deletion first and a stale "updated" (still active) after it.
    assert (
        await send(identity_api, "customer.subscription.deleted", canceled, created=created + 5)
    ).status_code == 200
    await eventually(lambda: applied(platform, owner.tenant_id))
    assert (
        await send(identity_api, "customer.subscription.updated", live, created=created)
    ).status_code == 200
    # ...and a created event replayed later for the same subscription.
    assert (
        await send(identity_api, "customer.subscription.created", live, created=created - 5)
    ).status_code == 200
    await eventually(lambda: applied(platform, owner.tenant_id))
    tenant, account = await state(platform, owner.tenant_id)
    assert account.subscription_status == "canceled"
    assert (tenant.status, tenant.plan, tenant.seats) == ("active", "free", 2)
    billing = (await identity_api.get("/api/v1/billing", headers=owner.auth)).json()
    assert billing["plan"] == "free" and billing["subscription"]["status"] == "canceled"
    # A canceled subscription cannot be "reactivated"; a new one can be started.
    problem(
        await identity_api.post("/api/v1/billing/subscription/reactivate", headers=owner.auth),
        409,
    )
    r = await identity_api.post(
        "/api/v1/billing/subscription", json={"plan": "pro", "seats": 2}, headers=owner.auth
    )
    assert r.status_code == 201 and r.json()["subscription"]["id"] != sub_id, r.text


@pytest_asyncio.fixture(loop_scope="session")
async def local_webhooks(platform: RunningPlatform) -> Any:
    """Local billing mode with a webhook secret (payloads cannot be re-read)."""
    ident = identity_of(platform.runtime("identity"))
    assert ident.billing.mode == "local"
    previous = ident.settings.stripe_webhook_secret
    ident.settings.stripe_webhook_secret = SecretStr(WEBHOOK_SECRET)
    yield
    ident.settings.stripe_webhook_secret = previous


async def test_payload_ordering_when_stripe_cannot_be_reread(
    identity_api: httpx.AsyncClient, platform: RunningPlatform, local_webhooks: None
) -> None:
    owner = await signup(identity_api)
    await wait_status(identity_api, owner, "active")
    r = await identity_api.post(
        "/api/v1/billing/subscription", json={"plan": "pro", "seats": 2}, headers=owner.auth
    )
    assert r.status_code == 201, r.text
    _tenant, account = await state(platform, owner.tenant_id)
    sub = {
        "id": account.stripe_subscription_id,
        "object": "subscription",
        "customer": account.stripe_customer_id,
        "status": "past_due",
        "cancel_at_period_end": False,
        "items": {"data": [{"id": "si_local", "quantity": 2}]},
    }
    t = int(time.time())
    await send(identity_api, "customer.subscription.updated", sub, created=t + 10)
    await eventually(lambda: applied(platform, owner.tenant_id))
    await wait_status(identity_api, owner, "past_due")
    # An older "active" arriving late does not undo the newer past_due.
    await send(
        identity_api, "customer.subscription.updated", {**sub, "status": "active"}, created=t
    )
    await eventually(lambda: applied(platform, owner.tenant_id))
    tenant, _account = await state(platform, owner.tenant_id)
    assert tenant.status == "past_due"
    # A newer paid invoice reactivates at once.
    invoice = {"id": "in_local", "customer": sub["customer"], "subscription": sub["id"]}
    await send(identity_api, "invoice.paid", invoice, created=t + 20)
    await wait_status(identity_api, owner, "active")


async def test_trial_end_grace_suspension_pending_deletion_deleted(
    identity_api: httpx.AsyncClient,
    gateway_api: httpx.AsyncClient,
    platform: RunningPlatform,
    smtp_server: SmtpSink,
) -> None:
    owner = await signup(identity_api, plan="pro")
    await wait_status(identity_api, owner, "trialing")
    ident = identity_of(platform.runtime("identity"))
    db = platform.runtime("identity").db
    tid = uuid.UUID(owner.tenant_id)
    _tenant, account = await state(platform, owner.tenant_id)
    assert account.trial_ends_at is not None
    settings = ident.settings

    async def sweep(at: datetime) -> dict[uuid.UUID, str]:
        return await sweep_once(db, settings, ident.billing, now=at, only={tid})

    # A reminder before the trial ends, once.
    remind_at = account.trial_ends_at - timedelta(days=settings.trial_reminder_days, hours=-1)
    assert await sweep(remind_at) == {}
    assert await sweep(remind_at) == {}
    await eventually(
        lambda: [m for m in smtp_server.to(owner.email) if "trial ends soon" in m["Subject"]]
    )
    at = account.trial_ends_at + timedelta(minutes=1)
    assert await sweep(at) == {tid: "past_due"}
    at += timedelta(days=settings.past_due_grace_days, minutes=1)
    assert await sweep(at) == {tid: "suspended"}
    at += timedelta(days=settings.suspended_days, minutes=1)
    assert await sweep(at) == {tid: "pending_deletion"}
    mail = await eventually(
        lambda: [m for m in smtp_server.to(owner.email) if "will be deleted" in m["Subject"]]
    )
    assert "/api/v1/tenant/exports" in mail[0].get_content()

    # Pending deletion: the data is closed, billing and the tenant (export) are not.
    async def closed() -> bool:
        r = await gateway_api.get("/api/v1/users", headers=owner.auth)
        return r.status_code == 403 and r.json()["type"].endswith("tenant-inactive")

    await eventually(closed)
    assert (await gateway_api.get("/api/v1/billing", headers=owner.auth)).status_code == 200
    assert (await gateway_api.get("/api/v1/tenant", headers=owner.auth)).status_code == 200

    at += timedelta(days=settings.pending_deletion_days, minutes=1)
    assert await sweep(at) == {tid: "deleting"}

    async def deleted() -> bool:
        tenant, _ = await state(platform, owner.tenant_id)
        return tenant.status == "deleted"

    await eventually(deleted, timeout=60)
    assert datetime.now(UTC) < at  # the clocks ran on an injected "now"
