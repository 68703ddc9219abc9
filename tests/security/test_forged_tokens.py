"""Forged, tampered and stale tokens against every operation that needs a token: 401.

The tokens claim to be tenant A's viewer with the owner role (an escalation), and are
broken in one way each: ``alg: none``, HS256 keyed with identity's public key, a key of
the attacker's under the real or an unknown ``kid``, a ``jku`` pointing elsewhere, a
tampered payload under a real signature, and tokens signed by identity's real key that
are expired, not yet valid, for another audience/issuer/type or an unknown tenant, plus
garbage credentials. Every one of them, on every non-anonymous operation, must answer
401 (``application/problem+json``, an authentication refusal) and never any data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from crm_dev.testing import RunningPlatform
from crm_identity.components import identity_of
from tests.security.access_table import load_table
from tests.security.checks import is_auth_refusal, line, send
from tests.security.conftest import SERVICE_URLS
from tests.security.resources import Tenant, bounded
from tests.security.spec import IdSlot, Spec, build_request


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


async def forged_tokens(platform: RunningPlatform, tenant: Tenant) -> dict[str, str]:
    keys = identity_of(platform.runtime("identity")).keys
    tid = uuid.UUID(tenant.tenant_id)
    viewer = tenant.crm.user_ids["viewer"]
    sub = f"user:{viewer}"

    async def real(**kw: Any) -> str:
        base: dict[str, Any] = {
            "tenant_id": tid,
            "subject": sub,
            "kind": "user",
            "roles": ["owner"],
        }
        base.update(kw)
        token, _, _ = await keys.mint(**base)
        return token

    genuine = await real()
    header = json.loads(base64.urlsafe_b64decode(genuine.split(".")[0] + "=="))
    claims = json.loads(base64.urlsafe_b64decode(genuine.split(".")[1] + "=="))
    kid = header["kid"]
    jwks = (await tenant.gw.get("/.well-known/jwks.json")).json()
    public = next(k for k in jwks["keys"] if k["kid"] == kid)
    attacker = ECKey.generate_key("P-256", private=True)
    now = int(time.time())

    def es256(hdr: dict[str, Any], body: dict[str, Any] | None = None) -> str:
        return jwt.encode({"alg": "ES256", "typ": "at+jwt", **hdr}, body or claims, attacker)

    def hs256(secret: bytes) -> str:
        signing = _unsigned({"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims)
        mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{_b64(mac)}"

    pem = ECKey.import_key(public).as_pem(private=False)
    tampered_claims = {**claims, "tid": str(uuid.uuid4()), "roles": ["owner", "admin"]}
    head, _, signature = genuine.split(".")
    tokens = {
        "alg none": _unsigned({**header, "alg": "none"}, claims) + ".",
        "alg None, no signature part": _unsigned({**header, "alg": "None"}, claims),
        "HS256 keyed with the public JWK": hs256(json.dumps(public).encode()),
        "HS256 keyed with the public PEM": hs256(pem),
        "attacker key, real kid": es256({"kid": kid}),
        "attacker key, unknown kid": es256({"kid": "attacker-key"}),
        "kid path traversal": es256({"kid": "../../../../../dev/null"}),
        "jku to the attacker": es256({"kid": "attacker-key", "jku": "http://127.0.0.1:9/k.json"}),
        "embedded jwk": es256({"kid": "attacker-key", "jwk": attacker.as_dict(private=False)}),
        "tampered payload, real signature": f"{head}.{_b64(json.dumps(tampered_claims).encode())}"
        f".{signature}",
        "signature stripped": f"{head}.{genuine.split('.')[1]}.",
        "expired": await real(ttl_seconds=-300),
        "not yet valid": await real(extra={"nbf": now + 3600, "iat": now + 3600}),
        "wrong audience": await real(extra={"aud": "another-api"}),
        "wrong issuer": await real(extra={"iss": "https://evil.example"}),
        "unknown tenant": await real(tenant_id=uuid.uuid4()),
        "kind api_key with a user subject": await real(kind="api_key"),
        "garbage": "not-a-token",
        "oversized": "a" * 9000,
        "fake API key": "crm_live_" + "A" * 24 + "_" + "B" * 40,
    }
    return tokens


async def test_forged_and_stale_tokens_get_401_everywhere(
    sec_gw: httpx.AsyncClient, spec: Spec, attacker: Tenant, platform: RunningPlatform
) -> None:
    tokens = await forged_tokens(platform, attacker)
    table = load_table()
    ops = [
        op
        for op in spec.operations
        if not (table.get(op.key) and table[op.key].anonymous) and not op.unknown_params()
    ]
    assert len(ops) > 90, len(ops)

    def ids(slot: IdSlot) -> str:
        return attacker.ids[slot.kind][0]  # type: ignore[index]

    calls = []
    for op in ops:
        req = build_request(op, ids)
        for name, token in tokens.items():
            calls.append((req, name, {"Authorization": f"Bearer {token}"}))
        calls.append((req, "Basic scheme", {"Authorization": "Basic Zm9vOmJhcg=="}))
        calls.append((req, "bearer without a token", {"Authorization": "Bearer"}))
    answers = await bounded([send(sec_gw, req, headers) for req, _, headers in calls], limit=16)
    failures = [
        line(req, name, r)
        for (req, name, _), r in zip(calls, answers, strict=True)
        if not is_auth_refusal(r)
    ]
    assert not failures, f"{len(failures)} of {len(calls)}:\n" + "\n".join(failures[:40])


async def test_services_refuse_forged_tokens_without_the_gateway(
    sec_gw: httpx.AsyncClient, spec: Spec, attacker: Tenant, platform: RunningPlatform
) -> None:
    """Defence in depth: each service, called directly, refuses the same tokens (and a
    genuine token of tenant A presented for tenant B)."""
    tokens = await forged_tokens(platform, attacker)
    tokens.pop("fake API key")  # the gateway exchanges keys; a service sees only JWTs
    table = load_table()
    ops = [
        op
        for op in spec.operations
        if not (table.get(op.key) and table[op.key].anonymous)
        and not op.unknown_params()
        and op.service in SERVICE_URLS
    ]

    def ids(slot: IdSlot) -> str:
        return attacker.ids[slot.kind][0]  # type: ignore[index]

    other_tenant = str(uuid.uuid4())
    calls = []
    for op in ops:
        req = build_request(op, ids)
        base = SERVICE_URLS[op.service]
        for name, token in tokens.items():
            headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": attacker.tenant_id}
            calls.append((req, base, name, headers))
        spoofed = {**attacker.owner, "X-Tenant-ID": other_tenant}
        calls.append((req, base, "A's owner token for another X-Tenant-ID", spoofed))
    async with httpx.AsyncClient(timeout=60) as direct:

        async def call(req: Any, base: str, headers: dict[str, str]) -> httpx.Response:
            return await send(direct, req, headers, url=base + req.path)

        answers = await bounded([call(req, base, h) for req, base, _, h in calls], limit=16)
    failures = [
        line(req, f"{name} (direct to {req.op.service})", r)
        for (req, _, name, _), r in zip(calls, answers, strict=True)
        if r.status_code != 401
    ]
    assert not failures, f"{len(failures)} of {len(calls)}:\n" + "\n".join(failures[:40])
