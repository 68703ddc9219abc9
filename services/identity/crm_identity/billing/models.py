"""Billing tables in identity's platform schema.

Stripe's webhooks arrive without a tenant, so the mapping Stripe customer /
subscription -> tenant lives beside the tenant registry, not in a tenant schema.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_identity.models import RegistryBase


class BillingAccount(RegistryBase):
    """One tenant's billing state (Stripe ids, subscription mirror, lifecycle clocks)."""

    __tablename__ = "billing_accounts"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Mirror of the subscription: none, trialing, active, past_due, unpaid, canceled, ...
    subscription_status: Mapped[str] = mapped_column(
        String(30), nullable=False, server_default=text("'none'")
    )
    cancel_at_period_end: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    trial_ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    trial_reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    past_due_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pending_deletion_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Every seat or plan change bumps the sequence; Stripe is told the latest one.
    seat_sequence: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    synced_sequence: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    synced_quantity: Mapped[int | None] = mapped_column(Integer)
    # Stripe ``created`` (epoch seconds) of the newest event applied, for ordering.
    last_event_created: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("0")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class StripeWebhookEvent(RegistryBase):
    """Stripe event ids already received: a duplicate delivery has no second effect."""

    __tablename__ = "stripe_webhook_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created: Mapped[int] = mapped_column(BigInteger, nullable=False)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
