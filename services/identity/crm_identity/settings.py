"""Identity settings (prefix ``CRM_``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SecretStr

from crm_lib.settings import SERVICE_NAMES, PlatformSettings


class IdentitySettings(PlatformSettings):
    service_name: str = "identity"
    # Bearer token for the operator endpoints under /internal/v1 (unset: they answer 403).
    operator_token: SecretStr | None = None
    # Services that must report a provisioned schema before a tenant becomes active.
    provisioning_services: tuple[str, ...] = SERVICE_NAMES

    # Tokens
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_days: int = 30
    # PEM of an EC P-256 private key; unset: keys are generated and kept in the database.
    jwt_private_key: SecretStr | None = None

    # Passwords and login protection (crm_identity.sessions.throttle: back-off per
    # account + client address, a looser per-account ceiling; never a hard lock).
    password_min_length: int = 10
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    login_free_failures: int = 5
    login_backoff_base_seconds: float = 1.0
    login_backoff_max_seconds: float = 900.0
    login_failure_memory_seconds: int = 3600
    login_account_ceiling: int = 50
    login_account_window_seconds: int = 3600
    login_known_address_days: int = 30
    login_per_ip_per_minute: int = 30
    # Sign-ups whose requested (or derived) slug was taken, per client address and hour;
    # past it every sign-up from that address answers 429 (slug probing is bounded).
    signup_slug_collisions_per_ip_per_hour: int = 5

    # Invitations and email
    invitation_ttl_hours: int = 72
    app_base_url: str = "http://127.0.0.1:8000"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_from: str = "CRM <no-reply@crm.example>"

    # API keys: environment of new keys (crm_live_ / crm_test_).
    api_key_environment: str = "live"

    # Billing (README "Billing"): local (no external calls) or stripe.
    billing_mode: Literal["local", "stripe"] = "local"
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    # Where the Stripe SDK sends requests (a localstripe emulator in tests).
    stripe_api_base: str | None = None
    # Signatures older than this are refused (Stripe's default tolerance).
    stripe_webhook_tolerance_seconds: int = 300
    stripe_currency: str = "usd"
    # A paid-plan sign-up starts with a trial this long (0: no trial, straight to active).
    trial_days: int = 14
    # Days before the trial ends when owners are reminded (local trials; Stripe sends its own).
    trial_reminder_days: int = 3
    # past_due -> suspended (read-only) -> pending_deletion (export offered) -> deleted.
    past_due_grace_days: int = 14
    suspended_days: int = 30
    pending_deletion_days: int = 30
    # How often the identity worker runs the billing sweeper.
    billing_sweep_interval_seconds: float = 300.0
    # Plan catalogue: seats and per-seat monthly prices (cents); see crm_identity.plans.
    free_plan_seats: int = 2
    pro_seat_price_cents: int = 2_900
    enterprise_seat_price_cents: int = 7_900
    # Full override of the catalogue as JSON (list of plan objects), e.g. for a price change.
    plan_catalogue: list[dict[str, Any]] | None = None
