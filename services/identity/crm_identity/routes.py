"""Identity's public controllers (``/api/v1/...`` through the gateway, and the JWKS), one
module per domain; ``app.py`` adds billing, the internal and the operator endpoints."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from crm_identity.api_keys.controllers import ApiKeyController
from crm_identity.billing.controllers import PlanController
from crm_identity.exports.controllers import ExportController
from crm_identity.invitations.controllers import InvitationController
from crm_identity.keys.controllers import JWKSController
from crm_identity.oauth.controllers import OAuthController
from crm_identity.sessions.controllers import AuthController
from crm_identity.signup.controllers import SignupController
from crm_identity.teams.controllers import TeamController
from crm_identity.tenants.controllers import TenantApiController
from crm_identity.users.controllers import SeatController, UserController

PUBLIC_CONTROLLERS: list[ControllerRouterHandler] = [
    SignupController,
    AuthController,
    TenantApiController,
    ExportController,
    UserController,
    SeatController,
    InvitationController,
    TeamController,
    ApiKeyController,
    OAuthController,
    PlanController,
    JWKSController,
]
