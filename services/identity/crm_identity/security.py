"""Secrets: password hashing and policy, opaque tokens, API keys and client secrets.

Only hashes are stored. Opaque tokens carry their tenant in clear
(``<tenant hex>.<secret>``) so they can be routed without a lookup table; the
secret part has 256 bits of entropy. API keys follow the Stripe/GitHub shape:
``crm_live_<public id>_<secret><checksum>`` with a CRC32 checksum so scanners can
recognise leaked keys without calling us.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import string
import uuid
import zlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_ALPHABET = string.ascii_letters + string.digits
_COMMON = frozenset(
    {
        "password",
        "password1",
        "123456789",
        "1234567890",
        "qwertyuiop",
        "letmein123",
        "iloveyou12",
        "administrator",
        "welcome123",
        "passw0rd!",
    }
)


class PasswordHashing:
    def __init__(self, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        # Verified against when the account does not exist, so timing does not tell.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(stored or self._dummy, password) and stored is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)


def password_problems(password: str, *, email: str, min_length: int) -> list[str]:
    """Why a password is too weak (empty list: fine)."""
    problems: list[str] = []
    if len(password) < min_length:
        problems.append(f"must be at least {min_length} characters")
    if len(password) > 256:
        problems.append("must be at most 256 characters")
    classes = sum(
        any(pred(c) for c in password)
        for pred in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    if len(password) < 16 and classes < 3:
        problems.append("needs three of: lower case, upper case, digits, symbols (or 16+ chars)")
    lowered = password.lower()
    local = email.split("@", 1)[0].lower()
    if lowered in _COMMON or (len(local) >= 4 and local in lowered):
        problems.append("is too easy to guess")
    if len(set(password)) < 4:
        problems.append("repeats too few characters")
    return problems


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def random_secret(length: int = 43) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_tenant_token(tenant_id: uuid.UUID) -> str:
    """An opaque token routable to its tenant: ``<tenant hex>.<secret>``."""
    return f"{tenant_id.hex}.{random_secret()}"


def tenant_of_token(token: str) -> uuid.UUID | None:
    head, sep, secret = token.partition(".")
    if not sep or len(secret) < 20 or len(token) > 200:
        return None
    try:
        return uuid.UUID(hex=head)
    except ValueError:
        return None


_KEY_RE = re.compile(r"^crm_(live|test)_([A-Za-z0-9]{12})_([A-Za-z0-9]{32})([A-Za-z0-9]{6})$")


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode())
    out = ""
    for _ in range(6):
        value, rem = divmod(value, 62)
        out = _ALPHABET[rem] + out
    return out


def new_api_key(environment: str) -> tuple[str, str]:
    """(full key, public id)."""
    public_id = random_secret(12)
    body = f"crm_{environment}_{public_id}_{random_secret(32)}"
    return body + _checksum(body), public_id


def parse_api_key(key: str) -> str | None:
    """The public id of a well-formed key with a valid checksum, else None."""
    match = _KEY_RE.match(key)
    if not match:
        return None
    body, checksum = key[:-6], key[-6:]
    if not hmac.compare_digest(_checksum(body), checksum):
        return None
    return match.group(2)


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
