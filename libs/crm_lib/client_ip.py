"""The client's address as a service may trust it: forwarded only by a proven gateway.

The gateway sets ``X-Forwarded-For`` to the address it sees (it drops any the client
sent) and proves that it did so with ``X-Forwarded-Proof: t=<unix time>,v1=<hex>``:
HMAC-SHA256 over ``<t>\\n<X-Forwarded-For>`` with a key derived from the shared
``CRM_INTERNAL_TOKEN``. A service (identity's login limits) calls
:func:`client_address`: the forwarded address only when the proof is valid and fresh,
otherwise the socket peer, so a direct caller cannot pick the address it is limited by.
The proof header starts with ``X-Forwarded-`` and is therefore dropped by the gateway
when a client sends one.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

FORWARDED_FOR = "x-forwarded-for"
FORWARDED_PROOF = "x-forwarded-proof"
#: proofs older (or newer) than this are refused: a leaked header is useless soon after
PROOF_TOLERANCE_SECONDS = 300
_KEY_LABEL = b"crm-forwarded-for-v1"


@functools.lru_cache(maxsize=8)
def _proof_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _secret(secret: Any) -> str:
    """A plain string from ``str``, pydantic ``SecretStr`` or ``None`` ("" when unset)."""
    if secret is None:
        return ""
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
    return value if isinstance(value, str) else ""


def _mac(key: bytes, timestamp: str, forwarded_for: str) -> str:
    return hmac.new(key, f"{timestamp}\n{forwarded_for}".encode(), hashlib.sha256).hexdigest()


def forwarded_proof(secret: Any, forwarded_for: str, *, now: float | None = None) -> str | None:
    """The ``X-Forwarded-Proof`` value for ``forwarded_for`` (None without a secret)."""
    plain = _secret(secret)
    if not plain:
        return None
    timestamp = str(int(now if now is not None else time.time()))
    return f"t={timestamp},v1={_mac(_proof_key(plain), timestamp, forwarded_for)}"


def forwarded_headers(secret: Any, address: str) -> dict[str, str]:
    """The headers a gateway (or a test acting as one) sends for a client ``address``."""
    headers = {FORWARDED_FOR: address}
    proof = forwarded_proof(secret, address)
    if proof is not None:
        headers[FORWARDED_PROOF] = proof
    return headers


def proof_is_valid(
    secret: Any, forwarded_for: str, proof: str, *, now: float | None = None
) -> bool:
    plain = _secret(secret)
    if not plain or not proof or len(proof) > 200:
        return False
    fields = dict(part.partition("=")[::2] for part in proof.split(","))
    timestamp, given = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or not given:
        return False
    current = now if now is not None else time.time()
    if abs(current - int(timestamp)) > PROOF_TOLERANCE_SECONDS:
        return False
    expected = _mac(_proof_key(plain), timestamp, forwarded_for)
    return hmac.compare_digest(expected.encode(), given.encode())


def client_address(headers: Mapping[str, str], peer: str | None, secret: Any) -> str:
    """The caller's address: the gateway's ``X-Forwarded-For`` if its proof is valid,
    else the socket peer (``"unknown"`` without one). ``headers`` is case-insensitive
    (Litestar/Starlette headers) or has lower-case names."""
    forwarded = headers.get(FORWARDED_FOR) or ""
    proof = headers.get(FORWARDED_PROOF) or ""
    if forwarded and proof and proof_is_valid(secret, forwarded, proof):
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return peer or "unknown"
