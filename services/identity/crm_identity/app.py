"""The identity service: definition, app factory and worker entry point."""

from __future__ import annotations

from litestar import Litestar

from crm_identity.app_schema import SCHEMA
from crm_identity.components import identity_of
from crm_identity.exports.service import export_ready_subscription
from crm_identity.internal_controllers import InternalController, KeyRotationController
from crm_identity.mail.handlers import mail_subscription
from crm_identity.public_controllers import PUBLIC_CONTROLLERS
from crm_identity.settings import IdentitySettings
from crm_identity.tenants.controllers import TenantController
from crm_identity.tenants.handlers import saga_subscription
from crm_lib.service import ServiceDefinition, build_app

SERVICE = ServiceDefinition(
    name="identity",
    schema=SCHEMA,
    route_handlers=[
        *PUBLIC_CONTROLLERS,
        InternalController,
        KeyRotationController,
        TenantController,
    ],
    subscriptions=lambda runtime: [
        saga_subscription(runtime.settings),  # type: ignore[arg-type]
        mail_subscription(runtime.settings),  # type: ignore[arg-type]
        export_ready_subscription(runtime.settings.provisioning_services),  # type: ignore[attr-defined]
    ],
    verifier_factory=lambda runtime: identity_of(runtime).verifier,
    settings_class=IdentitySettings,
)


def create_app() -> Litestar:
    return build_app(SERVICE)
