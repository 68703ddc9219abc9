"""Login and sign-up tell a stranger nothing, and throttling is no weapon against owners.

Issue 10 ("Lockout as a weapon, and enumeration"; "Controls only at the gateway"):
five wrong passwords used to lock any account from anywhere, and the answers told
locked, unknown, multi-tenant and taken emails or slugs apart; identity's login limit
trusted any ``X-Forwarded-For``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from crm_dev.testing import RunningPlatform, SmtpSink, eventually
from crm_identity.components import identity_of
from crm_lib.client_ip import FORWARDED_PROOF, forwarded_proof
from services.identity.tests.conftest import (
    STRONG_PASSWORD,
    from_address,
    random_address,
    signup,
)

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def tune(platform: RunningPlatform) -> Iterator[Callable[..., None]]:
    """Change identity settings for one test (the running app reads them per request)."""
    settings = identity_of(platform.runtime("identity")).settings
    saved: dict[str, Any] = {}

    def apply(**values: Any) -> None:
        for name, value in values.items():
            saved.setdefault(name, getattr(settings, name))
            setattr(settings, name, value)

    yield apply
    for name, value in saved.items():
        setattr(settings, name, value)


def _answer(r: httpx.Response) -> tuple[int, str, str, str, str]:
    body = r.json()
    return (r.status_code, body["type"], body["title"], body["detail"], r.headers["content-type"])


async def _login(
    api: httpx.AsyncClient, email: str, password: str, address: str, **extra: Any
) -> httpx.Response:
    return await api.post(
        LOGIN, json={"email": email, "password": password, **extra}, headers=from_address(address)
    )


async def test_wrong_unknown_and_throttled_logins_get_one_answer(
    identity_api: httpx.AsyncClient, tune: Callable[..., None]
) -> None:
    tune(login_backoff_base_seconds=60.0)  # the wait after the free attempts: no timing races
    owner = await signup(identity_api)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    attacker = random_address()

    answers = []
    for email in (owner.email, unknown):
        for _ in range(5):  # the free attempts: checked, wrong
            r = await _login(identity_api, email, "Wrong-password-1", attacker)
            answers.append(_answer(r))
            assert "retry-after" not in r.headers
        # Throttled now: refused without checking, even the right password; same answer.
        throttled = await _login(identity_api, email, STRONG_PASSWORD, attacker)
        answers.append(_answer(throttled))
        assert 55 <= int(throttled.headers["retry-after"]) <= 60
    assert len(set(answers)) == 1, answers
    status, type_, _title, detail, ctype = answers[0]
    assert status == 401 and type_.endswith("/invalid-login")
    assert ctype.startswith("application/problem+json")
    assert "locked" not in detail.lower()

    # The stranger never locks the owner out: from the owner's address the right password works.
    ok = await _login(identity_api, owner.email, STRONG_PASSWORD, random_address())
    assert ok.status_code == 200, ok.text
    # ...while the stranger's address keeps waiting.
    again = await _login(identity_api, owner.email, STRONG_PASSWORD, attacker)
    assert _answer(again) == answers[0]


async def test_backoff_ends_and_a_success_clears_it(
    identity_api: httpx.AsyncClient, tune: Callable[..., None]
) -> None:
    tune(login_free_failures=2, login_backoff_base_seconds=0.2, login_backoff_max_seconds=0.4)
    owner = await signup(identity_api)
    address = random_address()
    for _ in range(2):
        r = await _login(identity_api, owner.email, "Wrong-password-1", address)
        assert r.status_code == 401

    async def admitted() -> httpx.Response | None:
        r = await _login(identity_api, owner.email, STRONG_PASSWORD, address)
        return r if r.status_code == 200 else None

    await eventually(admitted, timeout=10)  # back-off, not a lock: it ends by itself
    # The success forgot the failures: two free attempts again.
    for _ in range(2):
        r = await _login(identity_api, owner.email, "Wrong-password-1", address)
        assert "retry-after" not in r.headers


async def test_account_ceiling_slows_strangers_not_the_owner(
    identity_api: httpx.AsyncClient, tune: Callable[..., None]
) -> None:
    tune(login_account_ceiling=6, login_backoff_base_seconds=60.0)
    owner = await signup(identity_api)
    home = random_address()
    assert (await _login(identity_api, owner.email, STRONG_PASSWORD, home)).status_code == 200
    # A distributed guesser: three addresses, two tries each, reaches the ceiling.
    for _ in range(3):
        bot = random_address()
        for _ in range(2):
            assert (await _login(identity_api, owner.email, "Guess-123-x", bot)).status_code == 401
    # Past it a new address gets one try, then waits.
    bot = random_address()
    first = await _login(identity_api, owner.email, "Guess-123-x", bot)
    assert first.status_code == 401 and "retry-after" not in first.headers
    second = await _login(identity_api, owner.email, STRONG_PASSWORD, bot)
    assert second.status_code == 401 and int(second.headers["retry-after"]) > 0
    # The owner is not locked out: from home a typo and then the password work...
    assert (await _login(identity_api, owner.email, "Typo-password-9", home)).status_code == 401
    assert (await _login(identity_api, owner.email, STRONG_PASSWORD, home)).status_code == 200
    # ...and from a new address the first attempt is always checked.
    travel = await _login(identity_api, owner.email, STRONG_PASSWORD, random_address())
    assert travel.status_code == 200


async def test_an_email_in_several_tenants_is_not_revealed(
    identity_api: httpx.AsyncClient, smtp_server: SmtpSink
) -> None:
    first = await signup(identity_api)
    # Signing up again with the same email is a new, working company (no email-taken).
    second = await signup(
        identity_api, email=first.email.upper(), password="Other-Horse-77-battery"
    )
    assert second.tenant_id != first.tenant_id

    async def working() -> httpx.Response | None:
        r = await identity_api.get("/api/v1/users/me", headers=second.auth)
        return r if r.status_code == 200 else None  # 409 while provisioning

    me = await eventually(working)
    assert me.json()["roles"] == ["owner"] and me.json()["email"] == first.email
    # The address is told, by email, that a new company was created with it.
    notices = await eventually(
        lambda: [m for m in smtp_server.to(first.email) if second.slug in m.get_content()]
    )
    assert "new company" in notices[0]["Subject"]

    address = random_address()
    # Without `tenant`: the oldest company of the email, never "several tenants".
    plain = await _login(identity_api, first.email, first.password, address)
    assert plain.status_code == 200 and plain.json()["tenant_id"] == first.tenant_id
    # The other company's password without `tenant` is just a failed login.
    other = await _login(identity_api, first.email, "Other-Horse-77-battery", address)
    unknown = await _login(identity_api, "nobody-x@example.com", "Other-Horse-77-battery", address)
    assert _answer(other) == _answer(unknown)
    chosen = await _login(
        identity_api, first.email, "Other-Horse-77-battery", address, tenant=second.slug
    )
    assert chosen.status_code == 200 and chosen.json()["tenant_id"] == second.tenant_id
    wrong_tenant = await _login(
        identity_api, first.email, first.password, address, tenant=f"no-{uuid.uuid4().hex[:6]}"
    )
    assert _answer(wrong_tenant) == _answer(unknown)


async def test_signup_never_says_slug_taken_and_bounds_probing(
    identity_api: httpx.AsyncClient, tune: Callable[..., None]
) -> None:
    tune(signup_slug_collisions_per_ip_per_hour=2)
    taken = await signup(identity_api)
    prober = random_address()

    async def attempt(address: str, **overrides: Any) -> httpx.Response:
        tag = uuid.uuid4().hex[:8]
        body = {
            "company_name": f"Probe {tag}",
            "admin_name": "Pat",
            "email": f"pat-{tag}@example.com",
            "password": STRONG_PASSWORD,
            **overrides,
        }
        return await identity_api.post("/api/v1/signup", json=body, headers=from_address(address))

    suffixed = await attempt(prober, slug=taken.slug)
    assert suffixed.status_code == 201, suffixed.text
    assert suffixed.json()["tenant"]["slug"] == f"{taken.slug}-2"
    reserved = await attempt(prober, slug="admin")
    assert reserved.status_code == 201 and reserved.json()["tenant"]["slug"] != "admin"
    # Two collisions from this address in the hour: it may not probe (or sign up) more.
    blocked = await attempt(prober)
    assert blocked.status_code == 429, blocked.text
    assert blocked.headers["content-type"].startswith("application/problem+json")
    assert int(blocked.headers["retry-after"]) > 0
    # Everyone else signs up at once.
    assert (await attempt(random_address())).status_code == 201


async def test_spoofed_forwarded_for_is_limited_by_the_real_address(
    identity_api: httpx.AsyncClient, platform: RunningPlatform
) -> None:
    redis = platform.runtime("identity").redis

    async def clear_peer_budget() -> None:
        async for key in redis.scan_iter(match="crm:ip:login*127.0.0.1*"):
            await redis.delete(key)

    await clear_peer_budget()
    try:
        statuses = []
        for n in range(31):
            spoofed = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
            if n % 2:  # a proof not made with the internal token does not help either
                spoofed[FORWARDED_PROOF] = forwarded_proof(
                    "guessed-secret", spoofed["X-Forwarded-For"]
                )  # type: ignore[assignment]
            r = await identity_api.post(
                LOGIN,
                json={"email": f"x-{uuid.uuid4().hex[:6]}@example.com", "password": "Whatever-123"},
                headers=spoofed,
            )
            statuses.append(r.status_code)
        assert statuses[:30] == [401] * 30
        assert statuses[30] == 429 and int(r.headers["retry-after"]) > 0
        # The gateway's proven address is a different client with its own budget.
        proven = await _login(identity_api, "y@example.com", "Whatever-123", random_address())
        assert proven.status_code == 401
    finally:
        await clear_peer_budget()


def test_forwarded_proof_checks() -> None:
    from crm_lib.client_ip import client_address, proof_is_valid

    proof = forwarded_proof("s3cret", "192.0.2.7", now=1_000_000)
    assert proof is not None and re.fullmatch(r"t=1000000,v1=[0-9a-f]{64}", proof)
    assert proof_is_valid("s3cret", "192.0.2.7", proof, now=1_000_100)
    assert not proof_is_valid("s3cret", "192.0.2.8", proof, now=1_000_100)  # other address
    assert not proof_is_valid("other", "192.0.2.7", proof, now=1_000_100)  # other secret
    assert not proof_is_valid("s3cret", "192.0.2.7", proof, now=1_000_400)  # stale
    assert not proof_is_valid(None, "192.0.2.7", proof, now=1_000_100)  # no secret: no trust
    fresh = {
        "x-forwarded-for": "192.0.2.7",
        FORWARDED_PROOF: forwarded_proof("s3cret", "192.0.2.7"),
    }
    assert client_address(fresh, "10.0.0.1", "s3cret") == "192.0.2.7"
    assert client_address({"x-forwarded-for": "192.0.2.7"}, "10.0.0.1", "s3cret") == "10.0.0.1"
    assert client_address(fresh, "10.0.0.1", None) == "10.0.0.1"


async def test_throttle_rules_hold_in_process_when_redis_is_away(
    platform: RunningPlatform,
) -> None:
    """Fail-open like every limit, but still back-off: nothing listens on the Redis port."""
    from redis.asyncio import Redis

    from crm_dev.devstack import free_port
    from crm_identity.sessions.throttle import LoginThrottle

    settings = identity_of(platform.runtime("identity")).settings.model_copy(
        update={"login_free_failures": 3, "login_backoff_base_seconds": 60.0}
    )
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    throttle = LoginThrottle(settings, dead)
    try:
        decisions = [await throttle.begin("a@example.com", "192.0.2.1") for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert 55 <= decisions[-1].retry_after <= 60
        assert (await throttle.begin("a@example.com", "192.0.2.2")).allowed  # other address
        assert (await throttle.begin("b@example.com", "192.0.2.1")).allowed  # other account
        await throttle.success("a@example.com", "192.0.2.1")
        assert (await throttle.begin("a@example.com", "192.0.2.1")).allowed
    finally:
        await dead.aclose()
