"""Wire shapes of billing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

PlanId = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
SeatCount = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
# Stripe ids: payment methods (pm_...), test tokens (tok_...).
PaymentMethodId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_]{3,255}$")]
ReturnUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s]{1,2000}$")]


class SubscriptionStart(msgspec.Struct, forbid_unknown_fields=True):
    """Start a paid subscription directly (a stored or given payment method)."""

    plan: PlanId
    seats: SeatCount | None = None
    payment_method: PaymentMethodId | None = None


class CheckoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    plan: PlanId
    seats: SeatCount | None = None
    success_url: ReturnUrl | None = None
    cancel_url: ReturnUrl | None = None


class PlanChange(msgspec.Struct, forbid_unknown_fields=True):
    plan: PlanId
    seats: SeatCount | None = None


class SeatChange(msgspec.Struct, forbid_unknown_fields=True):
    seats: SeatCount


class PortalRequest(msgspec.Struct, forbid_unknown_fields=True):
    return_url: ReturnUrl | None = None


class RedirectUrl(msgspec.Struct):
    url: str


class Subscription(msgspec.Struct):
    id: str | None
    status: str
    cancel_at_period_end: bool
    current_period_end: datetime | None


class SeatUse(msgspec.Struct):
    limit: int
    active_users: int
    pending_invitations: int
    used: int
    available: int


class Billing(msgspec.Struct):
    mode: str
    tenant_status: str
    plan: str
    seats: SeatUse
    subscription: Subscription
    trial_ends_at: datetime | None
    past_due_since: datetime | None
    suspended_at: datetime | None
    pending_deletion_at: datetime | None
    # Stripe still to be told about the latest seat/plan change (retried by the worker).
    sync_pending: bool


class Invoice(msgspec.Struct):
    id: str
    number: str | None
    status: str | None
    currency: str
    amount_due: int
    amount_paid: int
    created: datetime
    hosted_invoice_url: str | None
    invoice_pdf: str | None


class WebhookAck(msgspec.Struct):
    received: bool
    duplicate: bool = False
    ignored: str | None = None
