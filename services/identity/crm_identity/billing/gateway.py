"""The payment provider behind billing: ``StripeBilling`` (the Stripe API) or
``LocalBilling`` (``CRM_BILLING_MODE=local``: no external calls, subscriptions
are always paid, so the product is fully usable without Stripe).

Stripe objects are reduced to small value types here; the rest of billing never
sees the SDK. Seats are billed as the quantity of one subscription item on a
per-seat legacy *plan* with a deterministic id (created on first use), which both
real Stripe and the ``localstripe`` emulator understand.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import stripe

from crm_identity.plans import Plan
from crm_identity.settings import IdentitySettings
from crm_lib.http import ProblemError
from crm_lib.telemetry import describe_error, get_logger

log = get_logger("crm.identity.billing")


@dataclass(frozen=True)
class SubscriptionState:
    id: str
    customer: str
    status: str
    plan_id: str | None  # our plan id (free/pro/enterprise), from the Stripe plan's metadata
    quantity: int
    item_id: str | None
    cancel_at_period_end: bool
    current_period_end: datetime | None
    trial_end: datetime | None


@dataclass(frozen=True)
class InvoiceState:
    id: str
    number: str | None
    status: str | None
    currency: str
    amount_due: int
    amount_paid: int
    created: datetime
    hosted_invoice_url: str | None
    invoice_pdf: str | None


class BillingProvider(Protocol):
    mode: str

    async def ensure_customer(self, tenant_id: uuid.UUID, name: str, email: str | None) -> str: ...

    async def attach_payment_method(self, customer_id: str, payment_method: str) -> None: ...

    async def has_payment_method(self, customer_id: str) -> bool: ...

    async def create_subscription(
        self, customer_id: str, plan: Plan, quantity: int, *, tenant_id: uuid.UUID, key: str
    ) -> SubscriptionState: ...

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionState | None: ...

    async def set_items(
        self, subscription_id: str, plan: Plan, quantity: int, *, key: str
    ) -> SubscriptionState: ...

    async def set_cancel_at_period_end(
        self, subscription_id: str, cancel: bool, *, key: str
    ) -> SubscriptionState: ...

    async def checkout_url(
        self,
        customer_id: str,
        plan: Plan,
        quantity: int,
        *,
        tenant_id: uuid.UUID,
        success_url: str,
        cancel_url: str,
    ) -> str: ...

    async def portal_url(self, customer_id: str, return_url: str) -> str: ...

    async def list_invoices(self, customer_id: str, limit: int) -> list[InvoiceState]: ...


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    try:
        value = obj[name] if not isinstance(obj, str) else default
    except (KeyError, TypeError, AttributeError):
        return default
    return default if value is None else value


def subscription_from(obj: Any) -> SubscriptionState:
    """A Stripe subscription (SDK object or plain dict from a webhook payload)."""
    items = _get(_get(obj, "items", {}), "data", []) or []
    item = items[0] if items else None
    plan = _get(item, "plan") or _get(item, "price") or _get(obj, "plan")
    metadata = _get(plan, "metadata", {}) or {}
    our_plan = _get(metadata, "crm_plan") or _get(_get(obj, "metadata", {}), "crm_plan")
    period_end = _get(obj, "current_period_end") or _get(item, "current_period_end")
    customer = _get(obj, "customer", "")
    if not isinstance(customer, str):
        customer = _get(customer, "id", "")
    return SubscriptionState(
        id=str(_get(obj, "id", "")),
        customer=str(customer),
        status=str(_get(obj, "status", "incomplete")),
        plan_id=str(our_plan) if our_plan else None,
        quantity=int(_get(item, "quantity") or _get(obj, "quantity") or 0),
        item_id=str(_get(item, "id")) if item is not None and _get(item, "id") else None,
        cancel_at_period_end=bool(_get(obj, "cancel_at_period_end", False)),
        current_period_end=_ts(period_end),
        trial_end=_ts(_get(obj, "trial_end")),
    )


def _invoice_from(obj: Any) -> InvoiceState:
    return InvoiceState(
        id=str(_get(obj, "id")),
        number=_get(obj, "number"),
        status=_get(obj, "status"),
        currency=str(_get(obj, "currency", "usd")),
        amount_due=int(_get(obj, "amount_due", 0)),
        amount_paid=int(_get(obj, "amount_paid", 0)),
        created=_ts(_get(obj, "created")) or datetime.now(UTC),
        hosted_invoice_url=_get(obj, "hosted_invoice_url"),
        invoice_pdf=_get(obj, "invoice_pdf"),
    )


# --------------------------------------------------------------------------- local mode


class LocalBilling:
    """No external calls: customers and subscriptions exist only as ids in our tables,
    every subscription is paid at once and every change succeeds."""

    mode = "local"

    def __init__(self, settings: IdentitySettings) -> None:
        self.base_url = settings.app_base_url.rstrip("/")

    async def ensure_customer(self, tenant_id: uuid.UUID, name: str, email: str | None) -> str:
        return f"cus_local_{tenant_id.hex}"

    async def attach_payment_method(self, customer_id: str, payment_method: str) -> None:
        return None

    async def has_payment_method(self, customer_id: str) -> bool:
        return True

    def _state(
        self, subscription_id: str, customer_id: str, plan: Plan, quantity: int, cancel: bool
    ) -> SubscriptionState:
        return SubscriptionState(
            subscription_id, customer_id, "active", plan.id, quantity, None, cancel, None, None
        )

    async def create_subscription(
        self, customer_id: str, plan: Plan, quantity: int, *, tenant_id: uuid.UUID, key: str
    ) -> SubscriptionState:
        sub_id = f"sub_local_{uuid.uuid5(uuid.NAMESPACE_URL, key).hex}"
        return self._state(sub_id, customer_id, plan, quantity, False)

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionState | None:
        return None  # the local record is the truth

    async def set_items(
        self, subscription_id: str, plan: Plan, quantity: int, *, key: str
    ) -> SubscriptionState:
        return self._state(subscription_id, "", plan, quantity, False)

    async def set_cancel_at_period_end(
        self, subscription_id: str, cancel: bool, *, key: str
    ) -> SubscriptionState:
        return SubscriptionState(subscription_id, "", "active", None, 0, None, cancel, None, None)

    async def checkout_url(
        self,
        customer_id: str,
        plan: Plan,
        quantity: int,
        *,
        tenant_id: uuid.UUID,
        success_url: str,
        cancel_url: str,
    ) -> str:
        return (
            f"{success_url}{'&' if '?' in success_url else '?'}session_id=cs_local_{tenant_id.hex}"
        )

    async def portal_url(self, customer_id: str, return_url: str) -> str:
        return return_url

    async def list_invoices(self, customer_id: str, limit: int) -> list[InvoiceState]:
        return []


# --------------------------------------------------------------------------- Stripe


def _provider_error(exc: stripe.StripeError) -> ProblemError:
    if isinstance(exc, stripe.CardError):
        return ProblemError(
            402,
            exc.user_message or "The card was declined.",
            title="Payment failed",
            type_="https://errors.crm.example/payment-failed",
        )
    if isinstance(exc, stripe.InvalidRequestError):
        log.warning("stripe.invalid_request", error=describe_error(exc))
        return ProblemError(
            422,
            exc.user_message or "The payment provider refused the request.",
            title="Payment provider refused",
            type_="https://errors.crm.example/payment-provider",
        )
    log.warning("stripe.unavailable", error=describe_error(exc))
    return ProblemError(
        503,
        "The payment provider is unavailable; try again shortly.",
        title="Payment provider unavailable",
        headers={"Retry-After": "5"},
    )


class StripeBilling:
    """The Stripe API through the official SDK (``stripe.StripeClient``, async calls)."""

    mode = "stripe"

    def __init__(self, settings: IdentitySettings, *, api_base: str | None = None) -> None:
        if settings.stripe_secret_key is None:
            raise RuntimeError("CRM_BILLING_MODE=stripe needs CRM_STRIPE_SECRET_KEY")
        base = api_base or settings.stripe_api_base
        self.client = stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses={"api": base} if base else None,
            http_client=stripe.HTTPXClient(),
            max_network_retries=2,
        )
        self.currency = settings.stripe_currency
        self._plans_ready: set[str] = set()

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc

    async def ensure_plan(self, plan: Plan) -> str:
        plan_id = plan.stripe_plan_id
        if plan_id in self._plans_ready:
            return plan_id
        try:
            await self.client.v1.plans.retrieve_async(plan_id)
        except stripe.InvalidRequestError:
            try:
                await self.client.v1.plans.create_async(
                    {
                        "id": plan_id,
                        "amount": plan.seat_price_cents,
                        "currency": plan.currency,
                        "interval": plan.interval,  # type: ignore[typeddict-item]
                        "product": {"name": f"CRM {plan.name} (per seat)"},
                        "metadata": {"crm_plan": plan.id},
                    },
                    {"idempotency_key": f"crm-plan-{plan_id}"},
                )
            except stripe.InvalidRequestError:
                # Created concurrently by another process: fine if it exists now.
                await self._call(self.client.v1.plans.retrieve_async(plan_id))
            except stripe.StripeError as exc:
                raise _provider_error(exc) from exc
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        self._plans_ready.add(plan_id)
        return plan_id

    async def ensure_customer(self, tenant_id: uuid.UUID, name: str, email: str | None) -> str:
        params: dict[str, Any] = {"name": name, "metadata": {"crm_tenant_id": str(tenant_id)}}
        if email:
            params["email"] = email
        customer = await self._call(
            self.client.v1.customers.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"crm-customer-{tenant_id}"},
            )
        )
        return str(customer.id)

    async def attach_payment_method(self, customer_id: str, payment_method: str) -> None:
        pm = await self._call(
            self.client.v1.payment_methods.attach_async(payment_method, {"customer": customer_id})
        )
        await self._call(
            self.client.v1.customers.update_async(
                customer_id, {"invoice_settings": {"default_payment_method": pm.id}}
            )
        )

    async def has_payment_method(self, customer_id: str) -> bool:
        customer = await self._call(self.client.v1.customers.retrieve_async(customer_id))
        settings = _get(customer, "invoice_settings", {}) or {}
        return bool(_get(settings, "default_payment_method") or _get(customer, "default_source"))

    async def create_subscription(
        self, customer_id: str, plan: Plan, quantity: int, *, tenant_id: uuid.UUID, key: str
    ) -> SubscriptionState:
        plan_id = await self.ensure_plan(plan)
        sub = await self._call(
            self.client.v1.subscriptions.create_async(
                {
                    "customer": customer_id,
                    "items": [{"plan": plan_id, "quantity": quantity}],  # type: ignore[typeddict-unknown-key]
                    "metadata": {"crm_tenant_id": str(tenant_id), "crm_plan": plan.id},
                },
                {"idempotency_key": key},
            )
        )
        return subscription_from(sub)

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionState | None:
        try:
            sub = await self.client.v1.subscriptions.retrieve_async(subscription_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise
        return subscription_from(sub)

    async def set_items(
        self, subscription_id: str, plan: Plan, quantity: int, *, key: str
    ) -> SubscriptionState:
        plan_id = await self.ensure_plan(plan)
        current = await self._call(self.client.v1.subscriptions.retrieve_async(subscription_id))
        state = subscription_from(current)
        item: dict[str, Any] = {"plan": plan_id, "quantity": quantity}
        if state.item_id:
            item["id"] = state.item_id
        sub = await self._call(
            self.client.v1.subscriptions.update_async(
                subscription_id,
                {"items": [item], "metadata": {"crm_plan": plan.id}},  # type: ignore[arg-type]
                {"idempotency_key": key},
            )
        )
        return subscription_from(sub)

    async def set_cancel_at_period_end(
        self, subscription_id: str, cancel: bool, *, key: str
    ) -> SubscriptionState:
        sub = await self._call(
            self.client.v1.subscriptions.update_async(
                subscription_id, {"cancel_at_period_end": cancel}, {"idempotency_key": key}
            )
        )
        return subscription_from(sub)

    async def checkout_url(
        self,
        customer_id: str,
        plan: Plan,
        quantity: int,
        *,
        tenant_id: uuid.UUID,
        success_url: str,
        cancel_url: str,
    ) -> str:
        plan_id = await self.ensure_plan(plan)
        session = await self._call(
            self.client.v1.checkout.sessions.create_async(
                {
                    "mode": "subscription",
                    "customer": customer_id,
                    "client_reference_id": str(tenant_id),
                    "line_items": [{"price": plan_id, "quantity": quantity}],
                    "subscription_data": {
                        "metadata": {"crm_tenant_id": str(tenant_id), "crm_plan": plan.id}
                    },
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                }
            )
        )
        return str(session.url)

    async def portal_url(self, customer_id: str, return_url: str) -> str:
        session = await self._call(
            self.client.v1.billing_portal.sessions.create_async(
                {"customer": customer_id, "return_url": return_url}
            )
        )
        return str(session.url)

    async def list_invoices(self, customer_id: str, limit: int) -> list[InvoiceState]:
        page = await self._call(
            self.client.v1.invoices.list_async({"customer": customer_id, "limit": limit})
        )
        return [_invoice_from(inv) for inv in page.data]


def build_provider(settings: IdentitySettings) -> BillingProvider:
    if settings.billing_mode == "stripe":
        return StripeBilling(settings)
    return LocalBilling(settings)
