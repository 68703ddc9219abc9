"""Which service owns a public path.

The owner of ``/api/v1/<segment>/...`` is decided by ``<segment>`` alone, so routing
is one dict lookup. Services mount their handlers under the same ``/api/v1/...`` path:
the gateway forwards the path unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from crm_gateway.settings import GatewaySettings
from crm_lib.settings import SERVICE_NAMES

API_PREFIX = "/api/v1/"
WELL_KNOWN_PREFIX = "/.well-known/"

_OWNERS: dict[str, tuple[str, ...]] = {
    "identity": (
        "signup",
        "auth",
        "tenant",
        "users",
        "invitations",
        "teams",
        "roles",
        "seats",
        "api-keys",
        "oauth",
        "plans",
        "billing",
    ),
    "contacts": (
        "contacts",
        "companies",
        "tags",
        "custom-fields",
        "imports",
        "exports",
        "views",
        "timeline",
        "gdpr",
        "merges",
        "activities",
        "visibility-rules",
        "audit",
    ),
    "sales": (
        "pipelines",
        "stages",
        "deals",
        "products",
        "quotes",
        "tasks",
        "forecasts",
        "reports",
    ),
    "marketing": (
        "segments",
        "campaigns",
        "templates",
        "sends",
        "tracking",
        "consents",
        "automations",
    ),
    "support": ("tickets", "sla-policies", "kb", "portal", "csat"),
}

#: first path segment after /api/v1/ -> owning service
API_ROUTES: dict[str, str] = {
    segment: service for service, segments in _OWNERS.items() for segment in segments
}

#: name after /.well-known/ -> owning service
WELL_KNOWN_ROUTES: dict[str, str] = {
    "jwks.json": "identity",
    "oauth-authorization-server": "identity",
    "openid-configuration": "identity",
}


@dataclass(frozen=True, slots=True)
class Route:
    """Where one matched request goes and how long the gateway waits for it."""

    key: str  # segment ("contacts") or well-known name ("jwks.json")
    service: str
    timeout: aiohttp.ClientTimeout


class RouteTable:
    """Resolves a request path to a ``Route``; built once per app from the settings."""

    def __init__(
        self,
        settings: GatewaySettings,
        api_routes: Mapping[str, str] = API_ROUTES,
        well_known_routes: Mapping[str, str] = WELL_KNOWN_ROUTES,
    ) -> None:
        unknown = {s for s in (*api_routes.values(), *well_known_routes.values())} - set(
            SERVICE_NAMES
        )
        if unknown:
            raise ValueError(f"routes name unknown services: {sorted(unknown)}")
        self._api = {k: self._route(settings, k, s) for k, s in api_routes.items()}
        self._well_known = {k: self._route(settings, k, s) for k, s in well_known_routes.items()}

    @staticmethod
    def _route(settings: GatewaySettings, key: str, service: str) -> Route:
        connect = settings.upstream_connect_timeout_seconds
        read = settings.upstream_read_timeout_seconds
        for override_key in (service, key):  # the segment entry wins
            override = settings.route_timeouts.get(override_key)
            if override is not None:
                connect = override.connect if override.connect is not None else connect
                read = override.read if override.read is not None else read
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.upstream_pool_wait_seconds + connect,
            sock_connect=connect,
            sock_read=read,
        )
        return Route(key=key, service=service, timeout=timeout)

    def resolve(self, path: str) -> Route | None:
        """The route of ``path`` or ``None`` (-> 404)."""
        if path.startswith(API_PREFIX):
            segment = path[len(API_PREFIX) :].partition("/")[0]
            return self._api.get(segment)
        if path.startswith(WELL_KNOWN_PREFIX):
            return self._well_known.get(path[len(WELL_KNOWN_PREFIX) :].partition("/")[0])
        return None

    @property
    def api_segments(self) -> dict[str, str]:
        return {k: r.service for k, r in self._api.items()}
