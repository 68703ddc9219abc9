"""Identity settings (prefix ``CRM_``)."""

from __future__ import annotations

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

    # Passwords and login protection
    password_min_length: int = 10
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    login_max_failures: int = 5
    lockout_minutes: int = 15
    login_per_ip_per_minute: int = 30

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
