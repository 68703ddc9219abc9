from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from crm_dev.testing import RunningPlatform, served
from crm_dev.testing_logs import remember_secret
from crm_lib.service import build_app

STRONG_PASSWORD = remember_secret("Correct-Horse-42-battery")  # never in a log (log scan)
INTERNAL_TOKEN = "test-internal-token"


def from_address(address: str) -> dict[str, str]:
    """Headers of a request the gateway forwards for client ``address`` (with its proof)."""
    from crm_lib.client_ip import forwarded_headers

    return forwarded_headers(INTERNAL_TOKEN, address)


def random_address() -> str:
    n = uuid.uuid4().int
    return f"198.51.{n % 250}.{(n >> 8) % 250 + 1}"


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def identity_api(platform: RunningPlatform) -> AsyncIterator[httpx.AsyncClient]:
    rt = platform.runtime("identity")
    app = build_app(platform.definitions["identity"], rt.settings, runtime=rt)
    async with served(app) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@dataclass
class SignedUp:
    tenant_id: str
    slug: str
    email: str
    password: str
    access_token: str
    refresh_token: str
    body: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def signup(client: httpx.AsyncClient, *, wait: bool = True, **overrides: Any) -> SignedUp:
    """Sign up a new company; with ``wait`` until it is provisioned (409s before that)."""
    tag = uuid.uuid4().hex[:10]
    body = {
        "company_name": f"Acme {tag}",
        "admin_name": "Ada Admin",
        "email": f"ada-{tag}@example.com",
        "password": STRONG_PASSWORD,
        **overrides,
    }
    remember_secret(body["password"])
    response = await client.post("/api/v1/signup", json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    if wait:
        from crm_dev.testing import eventually

        auth = {"Authorization": f"Bearer {data['tokens']['access_token']}"}

        async def active() -> bool:
            r = await client.get("/api/v1/tenant", headers=auth)
            return r.status_code == 200 and r.json()["tenant"]["status"] != "provisioning"

        await eventually(active)
    return SignedUp(
        data["tenant"]["id"],
        data["tenant"]["slug"],
        body["email"],
        body["password"],
        data["tokens"]["access_token"],
        data["tokens"]["refresh_token"],
        data,
    )


# --------------------------------------------------------------------------- billing


@dataclass
class LocalStripe:
    """A ``localstripe`` emulator process and an SDK client pointed at it."""

    url: str
    client: Any  # stripe.StripeClient

    async def subscription(self, subscription_id: str) -> Any:
        return await self.client.v1.subscriptions.retrieve_async(subscription_id)


@pytest.fixture(scope="session")
def localstripe_server() -> Iterator[LocalStripe]:
    import stripe

    from crm_dev.devstack import free_port

    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        # --from-scratch: never load the machine-wide /tmp/localstripe.pickle that every
        # localstripe process shares (another run may have left it half-written)
        [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(
                    f"{url}/v1/customers", headers={"Authorization": "Bearer sk_test_x"}, timeout=1
                )
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("localstripe did not start")
            time.sleep(0.1)
        client = stripe.StripeClient(
            STRIPE_TEST_KEY, base_addresses={"api": url}, http_client=stripe.HTTPXClient()
        )
        yield LocalStripe(url, client)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


STRIPE_TEST_KEY = "sk_test_crm_localstripe"
WEBHOOK_SECRET = "whsec_crm_test_secret"


@pytest_asyncio.fixture(loop_scope="session")
async def stripe_mode(
    platform: RunningPlatform, localstripe_server: LocalStripe
) -> AsyncIterator[LocalStripe]:
    """Identity (web and worker) billing through ``StripeBilling`` against localstripe,
    with a webhook secret; local mode again afterwards."""
    from pydantic import SecretStr

    from crm_identity.billing.gateway import StripeBilling
    from crm_identity.components import identity_of

    ident = identity_of(platform.runtime("identity"))
    previous = ident.billing, ident.settings.stripe_webhook_secret
    stripe_settings = ident.settings.model_copy(
        update={
            "billing_mode": "stripe",
            "stripe_secret_key": SecretStr(STRIPE_TEST_KEY),
            "stripe_api_base": localstripe_server.url,
        }
    )
    ident.billing = StripeBilling(stripe_settings)
    ident.settings.stripe_webhook_secret = SecretStr(WEBHOOK_SECRET)
    try:
        yield localstripe_server
    finally:
        ident.billing, ident.settings.stripe_webhook_secret = previous


def signed_webhook(
    event_type: str,
    obj: dict[str, Any],
    *,
    created: int | None = None,
    event_id: str | None = None,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A Stripe event as Stripe sends it: JSON body and ``Stripe-Signature`` header
    (``t=<ts>,v1=<HMAC-SHA256(secret, "<ts>.<body>")>``, the SDK's own signing code)."""
    import json

    import stripe

    now = int(time.time())
    body = json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "api_version": "2025-03-31.basil",
            "type": event_type,
            "created": created if created is not None else now,
            "livemode": False,
            "data": {"object": obj},
        }
    ).encode()
    ts = timestamp if timestamp is not None else now
    signature = stripe.WebhookSignature._compute_signature(f"{ts}.{body.decode()}", secret)
    return body, {
        "Stripe-Signature": f"t={ts},v1={signature}",
        "Content-Type": "application/json",
    }


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def gateway_api(
    platform: RunningPlatform, identity_api: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """The real gateway in front of identity (the only upstream these tests call)."""
    from crm_gateway.app import create_app as create_gateway
    from crm_gateway.settings import GatewaySettings
    from crm_lib.settings import SERVICE_NAMES

    identity_url = str(identity_api.base_url).rstrip("/")
    settings = platform.runtime("identity").settings
    gateway_settings = GatewaySettings(
        **{f"{name}_url": identity_url for name in SERVICE_NAMES},
        redis_url=settings.redis_url,
        nats_url=settings.nats_url,
        database_url=settings.database_url,
        internal_token="test-internal-token",
        log_level="WARNING",
    )
    async with (
        served(create_gateway(gateway_settings)) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=30) as client,
    ):
        yield client
