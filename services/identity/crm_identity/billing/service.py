"""Billing rules: plans, seats, the subscription and the tenant lifecycle it drives.

Never commits: the request or message edge owns the transaction. Every method
runs in a session bound to the tenant (users are counted there; billing tables
live in the platform schema and are reached schema-qualified) and serialises on
the tenant's registry row, like ``SeatPolicy``.

Lifecycle (tenant status): ``trialing → active ⇄ past_due → suspended →
pending_deletion → (deletion saga) deleted``; a paid invoice or an active
subscription moves ``past_due``/``suspended``/``pending_deletion`` back to
``active`` at once. The clocks (trial end, grace, suspension, pending deletion)
are run by ``sweep_tenant`` from the worker's sweeper.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_identity.billing import schemas
from crm_identity.billing.gateway import BillingProvider, SubscriptionState, subscription_from
from crm_identity.billing.models import BillingAccount
from crm_identity.billing.repository import BillingRepository
from crm_identity.mail.service import request_email
from crm_identity.models import Tenant
from crm_identity.plans import PLANS, Plan
from crm_identity.settings import IdentitySettings
from crm_identity.tenants.repository import TenantRepository
from crm_identity.tenants.service import TenantService
from crm_identity.users.repository import UserRepository
from crm_lib.auth import Principal
from crm_lib.events import emit
from crm_lib.http import ProblemError
from crm_lib.telemetry import get_logger

log = get_logger("crm.identity.billing")

SEATS_CHANGED = "identity.billing.seats_changed"
PLAN_CHANGED = "identity.billing.plan_changed"
SUBSCRIPTION_CHANGED = "identity.billing.subscription_changed"
STRIPE_EVENT = "identity.billing.stripe_event"

#: Tenant statuses billing moves between (provisioning and deletion belong to the saga).
BILLABLE = frozenset({"trialing", "active", "past_due", "suspended", "pending_deletion"})
#: Statuses that mean "the bill is not paid" (a live subscription may bring them back).
UNPAID = frozenset({"past_due", "suspended", "pending_deletion"})
#: Stripe subscription statuses of a subscription that still exists.
LIVE_SUBSCRIPTION = frozenset({"trialing", "active", "past_due", "unpaid", "incomplete"})
ENDED_SUBSCRIPTION = frozenset({"canceled", "incomplete_expired"})

STRIPE_EVENT_TYPES = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.trial_will_end",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "invoice.payment_action_required",
        "checkout.session.completed",
    }
)

SEATS_EXHAUSTED = "https://errors.crm.example/seats-exhausted"


def _validation(field: str, message: str, detail: str) -> ProblemError:
    return ProblemError(
        422,
        detail,
        title="Validation failed",
        type_="https://errors.crm.example/validation",
        errors=[{"field": field, "message": message}],
    )


def require_manager(principal: Principal) -> None:
    if principal.kind != "user":
        raise ProblemError(403, "Billing is for signed-in owners and admins, not API credentials.")
    if not principal.has_role("owner", "admin"):
        raise ProblemError(403, "Only owners and admins manage billing.")


class BillingService:
    def __init__(
        self,
        session: AsyncSession,
        settings: IdentitySettings,
        provider: BillingProvider,
        *,
        now: datetime | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.provider = provider
        self.repo = BillingRepository(session)
        self.users = UserRepository(session)
        self.now = now or datetime.now(UTC)

    # ------------------------------------------------------------------ reading

    async def _locked(self, tenant_id: uuid.UUID) -> tuple[Tenant, BillingAccount]:
        tenant = await self.repo.lock_tenant(tenant_id)
        if tenant is None:
            raise ProblemError(404, "No such tenant.")
        return tenant, await self.repo.account(tenant_id, lock=True)

    async def _seat_use(self, limit: int) -> schemas.SeatUse:
        active, pending = await self.users.seats_used()
        used = active + pending
        return schemas.SeatUse(limit, active, pending, used, max(0, limit - used))

    async def overview(self, tenant_id: uuid.UUID) -> schemas.Billing:
        tenant = await TenantRepository(self.session).get(tenant_id)
        if tenant is None:
            raise ProblemError(404, "No such tenant.")
        account = await self.repo.account(tenant_id)
        return await self._view(tenant, account)

    async def _view(self, tenant: Tenant, account: BillingAccount) -> schemas.Billing:
        return schemas.Billing(
            mode=self.provider.mode,
            tenant_status=tenant.status,
            plan=tenant.plan,
            seats=await self._seat_use(tenant.seats),
            subscription=schemas.Subscription(
                account.stripe_subscription_id,
                account.subscription_status,
                account.cancel_at_period_end,
                account.current_period_end,
            ),
            trial_ends_at=account.trial_ends_at,
            past_due_since=account.past_due_since,
            suspended_at=account.suspended_at,
            pending_deletion_at=account.pending_deletion_at,
            sync_pending=account.synced_sequence < account.seat_sequence,
        )

    # ------------------------------------------------------------------ validation

    def _plan(self, plan_id: str) -> Plan:
        plan = PLANS.get(plan_id)
        if plan is None:
            raise _validation("plan", f"one of {', '.join(PLANS)}", "Unknown plan.")
        return plan

    async def _check_seats(self, plan: Plan, seats: int) -> None:
        """Seats never below the users (and pending invitations) holding them, nor above
        the plan's maximum."""
        active, pending = await self.users.seats_used()
        if seats < active + pending:
            raise ProblemError(
                409,
                f"{active} active users and {pending} pending invitations hold seats: the seat "
                f"count cannot go below {active + pending}. Deactivate users or revoke "
                "invitations first.",
                title="Seats in use",
                type_="https://errors.crm.example/seats-in-use",
            )
        if seats > plan.max_seats:
            raise ProblemError(
                409,
                f"The {plan.name} plan allows at most {plan.max_seats} seats.",
                title="Too many seats for the plan",
                type_="https://errors.crm.example/plan-seat-limit",
            )

    def _writable(self, tenant: Tenant) -> None:
        if tenant.status not in BILLABLE:
            raise ProblemError(409, f"The tenant is {tenant.status}; billing cannot change now.")

    @staticmethod
    def _live(account: BillingAccount) -> bool:
        return (
            account.stripe_subscription_id is not None
            and account.subscription_status in LIVE_SUBSCRIPTION
        )

    # ------------------------------------------------------------------ subscription start

    async def _customer(self, tenant: Tenant, account: BillingAccount, email: str | None) -> str:
        if account.stripe_customer_id:
            return account.stripe_customer_id
        customer = await self.provider.ensure_customer(tenant.id, tenant.name, email)
        await self.repo.update_account(tenant.id, stripe_customer_id=customer)
        account.stripe_customer_id = customer
        return customer

    async def _actor_email(self, principal: Principal) -> str | None:
        if principal.user_id is None:
            return None
        user = await self.users.get(principal.user_id)
        return user.email if user is not None else None

    async def _target(self, tenant: Tenant, plan_id: str, seats: int | None) -> tuple[Plan, int]:
        plan = self._plan(plan_id)
        if not plan.paid:
            raise _validation("plan", "a paid plan", "Subscriptions are for paid plans.")
        active, pending = await self.users.seats_used()
        target = seats if seats is not None else max(tenant.seats, active + pending, 1)
        await self._check_seats(plan, target)
        return plan, target

    async def start_subscription(
        self, principal: Principal, data: schemas.SubscriptionStart
    ) -> schemas.Billing:
        tenant, account = await self._locked(principal.tenant_id)
        self._writable(tenant)
        if self._live(account):
            raise ProblemError(
                409,
                "The tenant already has a subscription; change its plan or seats instead.",
                title="Already subscribed",
            )
        plan, seats = await self._target(tenant, data.plan, data.seats)
        customer = await self._customer(tenant, account, await self._actor_email(principal))
        if data.payment_method:
            await self.provider.attach_payment_method(customer, data.payment_method)
        elif not await self.provider.has_payment_method(customer):
            raise ProblemError(
                409,
                "No payment method is stored: start a checkout session "
                "(POST /api/v1/billing/checkout) or give payment_method.",
                title="Payment method required",
                type_="https://errors.crm.example/payment-method-required",
            )
        return await self._subscribe(principal, tenant, account, customer, plan, seats)

    async def _subscribe(
        self,
        principal: Principal,
        tenant: Tenant,
        account: BillingAccount,
        customer: str,
        plan: Plan,
        seats: int,
    ) -> schemas.Billing:
        sequence = account.seat_sequence + 1
        sub = await self.provider.create_subscription(
            customer,
            plan,
            seats,
            tenant_id=tenant.id,
            key=f"crm-subscription-{tenant.id}-{sequence}-{plan.id}-{seats}",
        )
        await self.repo.update_tenant(tenant.id, plan=plan.id, seats=seats)
        account = await self.repo.update_account(
            tenant.id,
            stripe_subscription_id=sub.id,
            subscription_status=sub.status,
            cancel_at_period_end=sub.cancel_at_period_end,
            current_period_end=sub.current_period_end or self.now + timedelta(days=30),
            seat_sequence=sequence,
            synced_sequence=sequence,
            synced_quantity=seats,
        )
        tenant.plan, tenant.seats = plan.id, seats
        await emit(
            self.session,
            SUBSCRIPTION_CHANGED,
            tenant.id,
            {"subscription_id": sub.id, "status": sub.status, "plan": plan.id, "seats": seats},
            actor=principal.subject,
        )
        await self._follow(tenant, account, sub.status, reason="subscription started")
        return await self._view(tenant, account)

    async def checkout(
        self, principal: Principal, data: schemas.CheckoutRequest
    ) -> schemas.RedirectUrl:
        tenant, account = await self._locked(principal.tenant_id)
        self._writable(tenant)
        if self._live(account):
            raise ProblemError(409, "The tenant already has a subscription.", title="Conflict")
        plan, seats = await self._target(tenant, data.plan, data.seats)
        base = self.settings.app_base_url.rstrip("/")
        success = data.success_url or f"{base}/settings/billing?checkout=success"
        cancel = data.cancel_url or f"{base}/settings/billing?checkout=canceled"
        customer = await self._customer(tenant, account, await self._actor_email(principal))
        url = await self.provider.checkout_url(
            customer, plan, seats, tenant_id=tenant.id, success_url=success, cancel_url=cancel
        )
        if self.provider.mode == "local":
            # No payment page locally: the checkout completes at once.
            await self._subscribe(principal, tenant, account, customer, plan, seats)
        return schemas.RedirectUrl(url)

    async def portal(
        self, principal: Principal, data: schemas.PortalRequest
    ) -> schemas.RedirectUrl:
        tenant, account = await self._locked(principal.tenant_id)
        base = self.settings.app_base_url.rstrip("/")
        back = data.return_url or f"{base}/settings/billing"
        customer = await self._customer(tenant, account, await self._actor_email(principal))
        return schemas.RedirectUrl(await self.provider.portal_url(customer, back))

    async def invoices(self, principal: Principal, limit: int) -> list[schemas.Invoice]:
        account = await self.repo.account(principal.tenant_id)
        if not account.stripe_customer_id:
            return []
        found = await self.provider.list_invoices(account.stripe_customer_id, limit)
        return [
            schemas.Invoice(
                i.id,
                i.number,
                i.status,
                i.currency,
                i.amount_due,
                i.amount_paid,
                i.created,
                i.hosted_invoice_url,
                i.invoice_pdf,
            )
            for i in found
        ]

    # ------------------------------------------------------------------ seats and plans

    async def _queue_sync(
        self, principal: Principal, tenant: Tenant, account: BillingAccount, event_type: str
    ) -> BillingAccount:
        sequence = account.seat_sequence + 1
        account = await self.repo.update_account(tenant.id, seat_sequence=sequence)
        await emit(
            self.session,
            event_type,
            tenant.id,
            {
                "seats": tenant.seats,
                "plan": tenant.plan,
                "sequence": sequence,
                "subscription_id": account.stripe_subscription_id,
            },
            actor=principal.subject,
        )
        return account

    async def set_seats(self, principal: Principal, data: schemas.SeatChange) -> schemas.Billing:
        tenant, account = await self._locked(principal.tenant_id)
        self._writable(tenant)
        plan = self._plan(tenant.plan)
        await self._check_seats(plan, data.seats)
        if data.seats == tenant.seats:
            return await self._view(tenant, account)  # a retry: nothing to do, nothing to send
        if self._live(account) and tenant.status in UNPAID - {"past_due"}:
            raise ProblemError(409, "Settle the open bill before changing seats.")
        previous = tenant.seats
        await self.repo.update_tenant(tenant.id, seats=data.seats)
        tenant.seats = data.seats
        if self._live(account):
            account = await self._queue_sync(principal, tenant, account, SEATS_CHANGED)
        else:
            await emit(
                self.session,
                SEATS_CHANGED,
                tenant.id,
                {"seats": data.seats, "plan": tenant.plan, "sequence": account.seat_sequence},
                actor=principal.subject,
            )
        log.info("billing.seats_changed", tenant=str(tenant.id), seats=data.seats, was=previous)
        return await self._view(tenant, account)

    async def change_plan(self, principal: Principal, data: schemas.PlanChange) -> schemas.Billing:
        tenant, account = await self._locked(principal.tenant_id)
        self._writable(tenant)
        plan = self._plan(data.plan)
        if data.seats is not None:
            seats = data.seats
        else:  # keep the seats, within the plan, but never below those in use
            active, pending = await self.users.seats_used()
            seats = max(min(tenant.seats, plan.max_seats), active + pending)
        await self._check_seats(plan, seats)
        if not plan.paid:
            # Downgrading to the free plan: the subscription runs to the end of the period.
            if self._live(account):
                await self._set_cancel(principal, tenant, account, True)
                _tenant, account = await self._locked(principal.tenant_id)
                return await self._view(tenant, account)
            await self.repo.update_tenant(tenant.id, plan=plan.id, seats=seats)
            tenant.plan, tenant.seats = plan.id, seats
            await emit(self.session, PLAN_CHANGED, tenant.id, {"plan": plan.id, "seats": seats})
            if tenant.status == "trialing":
                await self._move(tenant, "active", "downgraded to the free plan")
                await self.repo.update_account(tenant.id, trial_ends_at=None)
            return await self._view(tenant, await self.repo.account(tenant.id))
        if not self._live(account):
            if tenant.status == "trialing":  # trying another paid plan during the trial
                await self.repo.update_tenant(tenant.id, plan=plan.id, seats=seats)
                tenant.plan, tenant.seats = plan.id, seats
                await emit(self.session, PLAN_CHANGED, tenant.id, {"plan": plan.id, "seats": seats})
                return await self._view(tenant, account)
            raise ProblemError(
                409,
                "There is no subscription to change: start one (POST /api/v1/billing/subscription"
                " or /api/v1/billing/checkout).",
                title="No subscription",
            )
        if plan.id == tenant.plan and seats == tenant.seats:
            return await self._view(tenant, account)
        await self.repo.update_tenant(tenant.id, plan=plan.id, seats=seats)
        tenant.plan, tenant.seats = plan.id, seats
        account = await self._queue_sync(principal, tenant, account, PLAN_CHANGED)
        return await self._view(tenant, account)

    async def _set_cancel(
        self, principal: Principal, tenant: Tenant, account: BillingAccount, cancel: bool
    ) -> BillingAccount:
        assert account.stripe_subscription_id is not None
        sub = await self.provider.set_cancel_at_period_end(
            account.stripe_subscription_id,
            cancel,
            key=f"crm-cancel-{tenant.id}-{account.stripe_subscription_id}-{cancel}-"
            f"{account.seat_sequence}-{int(account.updated_at.timestamp())}",
        )
        account = await self.repo.update_account(
            tenant.id,
            cancel_at_period_end=cancel,
            current_period_end=sub.current_period_end or account.current_period_end,
        )
        await emit(
            self.session,
            SUBSCRIPTION_CHANGED,
            tenant.id,
            {
                "subscription_id": account.stripe_subscription_id,
                "status": account.subscription_status,
                "cancel_at_period_end": cancel,
            },
            actor=principal.subject,
        )
        return account

    async def cancel(self, principal: Principal) -> schemas.Billing:
        tenant, account = await self._locked(principal.tenant_id)
        self._writable(tenant)
        if not self._live(account):
            raise ProblemError(409, "There is no subscription to cancel.", title="No subscription")
        if not account.cancel_at_period_end:
            account = await self._set_cancel(principal, tenant, account, True)
        return await self._view(tenant, account)

    async def reactivate(self, principal: Principal) -> schemas.Billing:
        """Undo a cancellation before the period ends."""
        tenant, account = await self._locked(principal.tenant_id)
        self._writable(tenant)
        if not self._live(account):
            raise ProblemError(
                409,
                "The subscription has ended: start a new one (POST /api/v1/billing/subscription).",
                title="No subscription",
            )
        if account.cancel_at_period_end:
            account = await self._set_cancel(principal, tenant, account, False)
        return await self._view(tenant, account)

    # ------------------------------------------------------------------ pushing seats to Stripe

    async def sync_to_provider(self, tenant_id: uuid.UUID, sequence: int) -> None:
        """Tell Stripe the absolute plan and quantity of change ``sequence``.

        The idempotency key is derived from tenant, subscription, sequence and target,
        so a redelivery (or a retry after a timeout) never applies twice; an older
        sequence is skipped because a newer event carries the latest state.
        """
        tenant, account = await self._locked(tenant_id)
        if sequence < account.seat_sequence or sequence <= account.synced_sequence:
            return
        if not self._live(account):
            await self.repo.update_account(tenant_id, synced_sequence=sequence)
            return
        assert account.stripe_subscription_id is not None
        plan = self._plan(tenant.plan)
        sub = await self.provider.set_items(
            account.stripe_subscription_id,
            plan,
            tenant.seats,
            key=f"crm-seats-{tenant_id}-{account.stripe_subscription_id}-{sequence}-"
            f"{plan.id}-{tenant.seats}",
        )
        await self.repo.update_account(
            tenant_id, synced_sequence=sequence, synced_quantity=sub.quantity or tenant.seats
        )

    # ------------------------------------------------------------------ lifecycle

    async def _move(self, tenant: Tenant, status: str, reason: str | None) -> None:
        if tenant.status == status:
            return
        await TenantService(self.session, self.settings.provisioning_services).change_status(
            tenant, status, reason
        )
        tenant.status = status

    async def _email_owners(self, tenant: Tenant, kind: str, subject: str, body: str) -> None:
        for email in await self.repo.owner_emails():
            await request_email(
                self.session, tenant.id, to=email, subject=subject, body=body, kind=kind
            )

    async def _follow(
        self, tenant: Tenant, account: BillingAccount, sub_status: str, *, reason: str
    ) -> None:
        """Move the tenant after its subscription's status (never backwards in access
        for a failure it has already been punished for)."""
        if tenant.status not in BILLABLE:
            return
        base = self.settings.app_base_url.rstrip("/")
        if sub_status == "active" or (sub_status == "trialing" and tenant.status != "active"):
            target = "active" if sub_status == "active" else "trialing"
            if tenant.status != target:
                await self._move(tenant, target, reason)
            await self.repo.update_account(
                tenant.id,
                past_due_since=None,
                suspended_at=None,
                pending_deletion_at=None,
                trial_ends_at=None if target == "active" else account.trial_ends_at,
            )
        elif sub_status in ("past_due", "unpaid"):
            if tenant.status in ("trialing", "active"):
                await self._move(tenant, "past_due", reason)
                await self.repo.update_account(tenant.id, past_due_since=self.now)
                await self._email_owners(
                    tenant,
                    "billing_past_due",
                    f"{tenant.name}: payment failed",
                    "We could not collect the payment for your CRM subscription. Everyone "
                    "keeps full access for now; please update the payment method within "
                    f"{self.settings.past_due_grace_days} days to avoid a suspension: "
                    f"{base}/settings/billing",
                )
        elif sub_status in ENDED_SUBSCRIPTION:
            if tenant.status in UNPAID:
                # Ended for non-payment: read-only (then the clocks run on).
                if tenant.status == "past_due":
                    await self._suspend(tenant)
            else:
                await self._downgrade_to_free(tenant)

    async def _suspend(self, tenant: Tenant) -> None:
        await self._move(tenant, "suspended", "unpaid")
        await self.repo.update_account(tenant.id, suspended_at=self.now)
        await self._email_owners(
            tenant,
            "billing_suspended",
            f"{tenant.name}: account suspended",
            "Your CRM account is suspended for an unpaid bill: data can be read but not "
            "changed. Settle the bill to lift the suspension at once: "
            f"{self.settings.app_base_url.rstrip('/')}/settings/billing",
        )

    async def _downgrade_to_free(self, tenant: Tenant) -> None:
        free = PLANS["free"]
        await self.repo.update_tenant(tenant.id, plan=free.id, seats=free.default_seats)
        tenant.plan, tenant.seats = free.id, free.default_seats
        await emit(
            self.session, PLAN_CHANGED, tenant.id, {"plan": free.id, "seats": free.default_seats}
        )
        if tenant.status != "active":
            await self._move(tenant, "active", "subscription ended: free plan")
        await self.repo.update_account(
            tenant.id, past_due_since=None, suspended_at=None, pending_deletion_at=None
        )

    async def apply_subscription(
        self,
        tenant_id: uuid.UUID,
        sub: SubscriptionState,
        *,
        created: int,
        authoritative: bool,
        reason: str,
    ) -> bool:
        """Mirror a subscription and move the tenant; ``False`` if it was stale.

        ``authoritative``: ``sub`` was just re-read from Stripe (the current truth); an
        event payload alone is applied only if newer than the last one applied.
        """
        tenant, account = await self._locked(tenant_id)
        current = account.stripe_subscription_id
        if current and sub.id != current:
            if self._live(account) or sub.status in ENDED_SUBSCRIPTION:
                log.info("billing.stale_subscription", tenant=str(tenant_id), sub=sub.id)
                return False  # an older subscription's news
        if current == sub.id and account.subscription_status in ENDED_SUBSCRIPTION:
            if sub.status not in ENDED_SUBSCRIPTION:
                return False  # a canceled subscription never comes back
        if not authoritative and created < account.last_event_created:
            return False
        adopted = current != sub.id
        values: dict[str, Any] = {
            "stripe_subscription_id": sub.id,
            "subscription_status": sub.status,
            "cancel_at_period_end": sub.cancel_at_period_end,
            "last_event_created": max(created, account.last_event_created),
        }
        if sub.current_period_end is not None:
            values["current_period_end"] = sub.current_period_end
        if sub.customer and not account.stripe_customer_id:
            values["stripe_customer_id"] = sub.customer
        if adopted and sub.status in LIVE_SUBSCRIPTION:
            # A subscription made elsewhere (Checkout): its plan and quantity become ours.
            plan = PLANS.get(sub.plan_id or "") or PLANS.get(tenant.plan)
            if plan is not None and plan.paid and sub.quantity > 0:
                await self.repo.update_tenant(tenant_id, plan=plan.id, seats=sub.quantity)
                tenant.plan, tenant.seats = plan.id, sub.quantity
                values["seat_sequence"] = account.seat_sequence + 1
                values["synced_sequence"] = account.seat_sequence + 1
                values["synced_quantity"] = sub.quantity
        account = await self.repo.update_account(tenant_id, **values)
        await self._follow(tenant, account, sub.status, reason=reason)
        return True

    async def handle_stripe_event(
        self, tenant_id: uuid.UUID, event_type: str, obj: dict[str, Any], created: int
    ) -> None:
        """Apply one received Stripe event (asynchronously, from the consumer)."""
        subscription_id = _subscription_id(event_type, obj)
        if event_type == "customer.subscription.trial_will_end":
            tenant, _account = await self._locked(tenant_id)
            await self._email_owners(
                tenant,
                "billing_trial_will_end",
                f"{tenant.name}: your trial ends soon",
                "Your CRM trial ends in a few days. Add a payment method to keep every "
                f"feature: {self.settings.app_base_url.rstrip('/')}/settings/billing",
            )
            return
        if event_type == "invoice.payment_action_required":
            tenant, _account = await self._locked(tenant_id)
            link = obj.get("hosted_invoice_url") or (
                f"{self.settings.app_base_url.rstrip('/')}/settings/billing"
            )
            await self._email_owners(
                tenant,
                "billing_action_required",
                f"{tenant.name}: confirm your payment",
                f"Your bank asks you to confirm the payment of your CRM invoice: {link}",
            )
        if not subscription_id:
            return
        fresh = await self.provider.retrieve_subscription(subscription_id)
        if fresh is not None:
            await self.apply_subscription(
                tenant_id, fresh, created=created, authoritative=True, reason=event_type
            )
            return
        # No re-read possible (local mode or the subscription is gone): the payload.
        if event_type.startswith("customer.subscription."):
            sub = subscription_from(obj)
            if event_type == "customer.subscription.deleted":
                sub = _with_status(sub, "canceled")
        else:
            account = await self.repo.account(tenant_id)
            if account.stripe_subscription_id != subscription_id:
                return
            status = {
                "invoice.paid": "active",
                "invoice.payment_succeeded": "active",
                "invoice.payment_failed": "past_due",
                "checkout.session.completed": "active",
            }.get(event_type)
            if status is None:
                return
            sub = SubscriptionState(
                subscription_id,
                account.stripe_customer_id or "",
                status,
                None,
                0,
                None,
                account.cancel_at_period_end,
                None,
                None,
            )
        await self.apply_subscription(
            tenant_id, sub, created=created, authoritative=False, reason=event_type
        )

    # ------------------------------------------------------------------ the clocks

    async def sweep_tenant(self, tenant_id: uuid.UUID) -> str | None:
        """Run the billing clocks of one tenant at ``self.now``; the new status if moved."""
        tenant, account = await self._locked(tenant_id)
        before = tenant.status
        base = self.settings.app_base_url.rstrip("/")
        now = self.now
        if (
            account.cancel_at_period_end
            and account.current_period_end is not None
            and account.current_period_end <= now
            and self.provider.mode == "local"
            and self._live(account)
        ):
            # Local subscriptions end by themselves (Stripe sends subscription.deleted).
            await self.repo.update_account(tenant_id, subscription_status="canceled")
            await self._follow(tenant, account, "canceled", reason="canceled at period end")
        elif tenant.status == "trialing" and account.trial_ends_at is not None:
            if self._live(account):
                pass
            elif account.trial_ends_at <= now:
                await self._move(tenant, "past_due", "trial ended")
                await self.repo.update_account(tenant_id, past_due_since=now)
                await self._email_owners(
                    tenant,
                    "billing_trial_ended",
                    f"{tenant.name}: your trial has ended",
                    "Your CRM trial has ended. Subscribe within "
                    f"{self.settings.past_due_grace_days} days to keep your account "
                    f"writable: {base}/settings/billing",
                )
            elif (
                account.trial_reminded_at is None
                and account.trial_ends_at - timedelta(days=self.settings.trial_reminder_days) <= now
            ):
                await self.repo.update_account(tenant_id, trial_reminded_at=now)
                await self._email_owners(
                    tenant,
                    "billing_trial_will_end",
                    f"{tenant.name}: your trial ends soon",
                    f"Your CRM trial ends on {account.trial_ends_at:%Y-%m-%d}. Subscribe to "
                    f"keep every feature: {base}/settings/billing",
                )
        elif tenant.status == "past_due":
            since = account.past_due_since or now
            if since + timedelta(days=self.settings.past_due_grace_days) <= now:
                await self._suspend(tenant)
        elif tenant.status == "suspended":
            since = account.suspended_at or now
            if since + timedelta(days=self.settings.suspended_days) <= now:
                await self._move(tenant, "pending_deletion", "unpaid")
                await self.repo.update_account(tenant_id, pending_deletion_at=now)
                deadline = now + timedelta(days=self.settings.pending_deletion_days)
                await self._email_owners(
                    tenant,
                    "billing_pending_deletion",
                    f"{tenant.name}: your data will be deleted on {deadline:%Y-%m-%d}",
                    "Your CRM account has been unpaid for too long and is scheduled for "
                    f"deletion on {deadline:%Y-%m-%d}. Export your data now "
                    f"(POST /api/v1/tenant/exports, {base}/settings/export) or settle the "
                    f"bill to restore the account: {base}/settings/billing",
                )
        elif tenant.status == "pending_deletion":
            since = account.pending_deletion_at or now
            if since + timedelta(days=self.settings.pending_deletion_days) <= now:
                await TenantService(
                    self.session, self.settings.provisioning_services
                ).request_deletion(tenant_id, actor="billing")
                tenant.status = "deleting"
        return tenant.status if tenant.status != before else None


# --------------------------------------------------------------------------- webhook


def _text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


async def _tenant_of(
    session: AsyncSession, obj: dict[str, Any], event_type: str
) -> uuid.UUID | None:
    """The tenant a Stripe object belongs to: by customer, subscription, then our metadata."""
    repo = BillingRepository(session)
    customer = _text(obj.get("customer"))
    if customer:
        found = await repo.tenant_for_customer(customer)
        if found is not None:
            return found
    sub = (
        obj.get("id")
        if event_type.startswith("customer.subscription.")
        else obj.get("subscription")
    )
    if _text(sub):
        found = await repo.tenant_for_subscription(str(_text(sub)))
        if found is not None:
            return found
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    for candidate in (obj.get("client_reference_id"), (metadata or {}).get("crm_tenant_id")):
        try:
            tenant_id = uuid.UUID(str(candidate))
        except ValueError:
            continue
        if await TenantRepository(session).get(tenant_id) is not None:
            return tenant_id
    return None


async def receive_stripe_event(
    session: AsyncSession, event_id: str, event_type: str, created: int, obj: dict[str, Any]
) -> schemas.WebhookAck:
    """A verified Stripe event (platform session): recorded once, then queued for its
    tenant as ``identity.billing.stripe_event`` (applied by the ``billing-stripe-events``
    consumer). Duplicates, unhandled types and unknown customers are acknowledged only."""
    handled = event_type in STRIPE_EVENT_TYPES
    tenant_id = await _tenant_of(session, obj, event_type) if handled else None
    first = await BillingRepository(session).record_webhook_event(
        event_id, event_type, tenant_id, created
    )
    if not first:
        return schemas.WebhookAck(True, duplicate=True)
    if not handled:
        return schemas.WebhookAck(True, ignored="event type not handled")
    if tenant_id is None:
        log.warning("billing.webhook_unknown_customer", stripe_event=event_id, type=event_type)
        return schemas.WebhookAck(True, ignored="no tenant for this customer")
    await emit(
        session,
        STRIPE_EVENT,
        tenant_id,
        {"id": event_id, "type": event_type, "created": created, "object": obj},
        actor="stripe",
    )
    return schemas.WebhookAck(True)


def _with_status(sub: SubscriptionState, status: str) -> SubscriptionState:
    from dataclasses import replace

    return replace(sub, status=status)


def _subscription_id(event_type: str, obj: dict[str, Any]) -> str | None:
    if event_type.startswith("customer.subscription."):
        value = obj.get("id")
    elif event_type.startswith("invoice."):
        value = obj.get("subscription")
        if not value:
            parent = obj.get("parent") or {}
            value = (parent.get("subscription_details") or {}).get("subscription")
    elif event_type == "checkout.session.completed":
        value = obj.get("subscription")
    else:
        value = None
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None
