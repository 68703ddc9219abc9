"""Billing HTTP API (owners and admins), the Stripe webhook (anonymous, signed) and the
plan catalogue (``/api/v1/plans``, anyone)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import stripe
from litestar import Controller, Request, Response, get, patch, post, put
from litestar.params import Body, Parameter

from crm_identity.billing import schemas
from crm_identity.billing.service import BillingService, receive_stripe_event, require_manager
from crm_identity.components import identity_of
from crm_identity.plans import PLANS, Plan
from crm_lib.auth import Principal
from crm_lib.http import ProblemError
from crm_lib.pagination import Page
from crm_lib.service import ServiceRuntime

API = "/api/v1/billing"


def _service(session: Any, runtime: ServiceRuntime) -> BillingService:
    ident = identity_of(runtime)
    return BillingService(session, ident.settings, ident.billing)


class BillingController(Controller):
    path = API
    tags = ["billing"]

    @get("/", summary="Plan, seats, subscription and lifecycle clocks (owner/admin)")
    async def overview(self, principal: Principal, runtime: ServiceRuntime) -> schemas.Billing:
        require_manager(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await _service(session, runtime).overview(principal.tenant_id)

    @post(
        "/subscription",
        status_code=201,
        summary="Start a paid subscription with a stored (or given) payment method",
    )
    async def start(
        self, data: schemas.SubscriptionStart, principal: Principal, runtime: ServiceRuntime
    ) -> schemas.Billing:
        require_manager(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await _service(session, runtime).start_subscription(principal, data)

    @patch("/subscription", summary="Change plan (and seats); to free: ends at period end")
    async def change_plan(
        self, data: schemas.PlanChange, principal: Principal, runtime: ServiceRuntime
    ) -> schemas.Billing:
        require_manager(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await _service(session, runtime).change_plan(principal, data)

    @post("/subscription/cancel", status_code=200, summary="Cancel at the end of the period")
    async def cancel(self, principal: Principal, runtime: ServiceRuntime) -> schemas.Billing:
        require_manager(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await _service(session, runtime).cancel(principal)

    @post("/subscription/reactivate", status_code=200, summary="Undo a pending cancellation")
    async def reactivate(self, principal: Principal, runtime: ServiceRuntime) -> schemas.Billing:
        require_manager(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await _service(session, runtime).reactivate(principal)

    @put("/seats", summary="Set the number of seats (never below the seats in use)")
    async def seats(
        self, data: schemas.SeatChange, principal: Principal, runtime: ServiceRuntime
    ) -> schemas.Billing:
        require_manager(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await _service(session, runtime).set_seats(principal, data)

    @post("/checkout", status_code=201, summary="A Stripe Checkout session for a subscription")
    async def checkout(
        self, data: schemas.CheckoutRequest, principal: Principal, runtime: ServiceRuntime
    ) -> schemas.RedirectUrl:
        require_manager(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await _service(session, runtime).checkout(principal, data)

    @post("/portal", status_code=201, summary="A Stripe customer portal session")
    async def portal(
        self,
        principal: Principal,
        runtime: ServiceRuntime,
        data: Annotated[schemas.PortalRequest | None, Body()] = None,
    ) -> schemas.RedirectUrl:
        require_manager(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            return await _service(session, runtime).portal(
                principal, data or schemas.PortalRequest()
            )

    @get("/invoices", summary="Invoices from Stripe, newest first")
    async def invoices(
        self,
        principal: Principal,
        runtime: ServiceRuntime,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
    ) -> Page[schemas.Invoice]:
        require_manager(principal)
        async with runtime.db.tenant_session(principal.tenant_id) as session:
            found = await _service(session, runtime).invoices(principal, limit)
        return Page(found, None)


# --------------------------------------------------------------------------- webhook


class _StripeEventIn(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    created: int
    data: dict[str, Any]


def _bad_webhook(detail: str) -> ProblemError:
    return ProblemError(
        400,
        detail,
        title="Invalid webhook",
        type_="https://errors.crm.example/invalid-webhook",
    )


class StripeWebhookController(Controller):
    path = f"{API}/stripe"
    tags = ["billing"]

    @post(
        "/webhook",
        status_code=200,
        summary="Stripe webhook: signature-verified, deduplicated, applied asynchronously",
    )
    async def webhook(
        self, request: Request[Any, Any, Any], runtime: ServiceRuntime
    ) -> Response[schemas.WebhookAck]:
        settings = identity_of(runtime).settings
        if settings.stripe_webhook_secret is None:
            raise ProblemError(
                404, "Stripe webhooks are not configured (CRM_STRIPE_WEBHOOK_SECRET)."
            )
        payload = await request.body()
        signature = request.headers.get("stripe-signature")
        if not signature:
            raise _bad_webhook("The Stripe-Signature header is missing.")
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text,
                signature,
                settings.stripe_webhook_secret.get_secret_value(),
                settings.stripe_webhook_tolerance_seconds,
            )
        except UnicodeDecodeError as exc:
            raise _bad_webhook("The payload is not UTF-8.") from exc
        except stripe.SignatureVerificationError as exc:
            raise _bad_webhook(f"The signature does not verify: {exc.user_message}") from exc
        try:
            event = msgspec.json.decode(payload, type=_StripeEventIn)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _bad_webhook(f"The event is malformed: {exc}") from exc
        obj = event.data.get("object")
        if not isinstance(obj, dict):
            raise _bad_webhook("The event has no data.object.")
        async with runtime.db.platform_session() as session:
            ack = await receive_stripe_event(session, event.id, event.type, event.created, obj)
        return Response(ack)


class PlanController(Controller):
    path = "/api/v1/plans"
    tags = ["plans"]

    @get("/", summary="The plan catalogue")
    async def plans(self) -> Page[Plan]:
        return Page(list(PLANS.values()), None)


BILLING_CONTROLLERS = [BillingController, StripeWebhookController]
