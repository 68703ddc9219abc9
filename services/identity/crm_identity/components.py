"""Identity's process-wide components, built once per runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from crm_identity import plans
from crm_identity.billing.gateway import BillingProvider, build_provider
from crm_identity.keys.service import KeyStore
from crm_identity.security import PasswordHashing
from crm_identity.sessions.service import LoginLimiter, SessionService
from crm_identity.sessions.throttle import LoginThrottle
from crm_identity.settings import IdentitySettings
from crm_lib.auth import JWKSVerifier
from crm_lib.service import ServiceRuntime


@dataclass
class Identity:
    runtime: ServiceRuntime
    settings: IdentitySettings
    keys: KeyStore
    hashing: PasswordHashing
    sessions: SessionService
    verifier: JWKSVerifier
    # LocalBilling or StripeBilling (CRM_BILLING_MODE); replaceable as a whole.
    billing: BillingProvider


def identity_of(runtime: ServiceRuntime) -> Identity:
    found = runtime.extras.get("identity")
    if found is None:
        settings = cast(IdentitySettings, runtime.settings)
        keys = KeyStore(runtime.db, settings)
        hashing = PasswordHashing(settings.argon2_time_cost, settings.argon2_memory_kib)
        sessions = SessionService(
            runtime.db,
            keys,
            settings,
            hashing,
            LoginLimiter(settings),
            LoginThrottle(settings, runtime.redis),
        )
        verifier = JWKSVerifier(settings, jwks_provider=keys.jwks, cache_seconds=5.0)
        plans.configure(settings)
        found = Identity(
            runtime, settings, keys, hashing, sessions, verifier, build_provider(settings)
        )
        runtime.extras["identity"] = found
    return cast(Identity, found)
