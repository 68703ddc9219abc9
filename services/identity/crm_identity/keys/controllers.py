"""The public signing keys: ``/.well-known/jwks.json`` (anyone)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get

from crm_identity.components import identity_of
from crm_lib.service import ServiceRuntime


class JWKSController(Controller):
    path = "/.well-known"
    tags = ["keys"]

    @get("/jwks.json", summary="Public keys that sign access tokens")
    async def jwks(self, runtime: ServiceRuntime) -> Response[dict[str, Any]]:
        doc = await identity_of(runtime).keys.jwks()
        return Response(doc, headers={"Cache-Control": "public, max-age=60"})
