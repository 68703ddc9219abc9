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
