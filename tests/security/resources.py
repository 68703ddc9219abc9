"""One factory per resource kind that has ids in the public API, and the tenants' callers.

``FACTORIES`` maps every kind ``tests/security/spec.py`` can name to a coroutine that
creates one such resource in a tenant (through the public API, as its owner) and returns
its id. ``test_every_path_parameter_has_a_factory`` fails when the OpenAPI has an id
whose kind is missing here: add the factory (and the kind in ``spec.py``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from crm_dev.testing import SmtpSink, eventually
from services.contacts.tests.conftest import PASSWORD, ROLES, CrmTenant, _invite

__all__ = ["PASSWORD", "ROLES"]


@dataclass
class Caller:
    """Someone calling the API: a role's user, an API key, an OAuth client, or nobody."""

    name: str
    headers: dict[str, str]
    kind: str  # user | api_key | client | anonymous
    role: str | None = None
    scopes: tuple[str, ...] = ()


@dataclass
class Tenant:
    """A tenant with a user per role, reached through the suite's gateway."""

    label: str
    gw: httpx.AsyncClient
    smtp: SmtpSink
    crm: CrmTenant
    canary: str
    #: kind -> ids created by the factories (the first is the "home" resource)
    ids: dict[str, list[str]] = field(default_factory=dict)
    #: credential name -> Caller (keys/clients with given scopes)
    credentials: dict[str, Caller] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @property
    def tenant_id(self) -> str:
        return self.crm.tenant_id

    @property
    def owner(self) -> dict[str, str]:
        return self.crm.auth("owner")

    def user(self, role: str) -> Caller:
        return Caller(role, self.crm.auth(role), "user", role=role)

    async def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("headers", self.owner)
        return await self.gw.request(method, path, **kw)

    async def create(self, method: str, path: str, want: Iterable[int] = (200, 201, 202), **kw):
        r = await self.call(method, path, **kw)
        assert r.status_code in tuple(want), (
            f"{self.label} {method} {path}: {r.status_code} {r.text}"
        )
        return r.json() if r.content else {}

    def name(self, what: str) -> str:
        return f"{self.canary}-{what}-{uuid.uuid4().hex[:6]}"

    async def make(self, kind: str) -> str:
        made = await FACTORIES[kind](self)
        self.ids.setdefault(kind, []).append(made)
        return made

    async def home(self, kind: str) -> str:
        """The first resource of ``kind`` (created on first use)."""
        async with self._locks.setdefault(kind, asyncio.Lock()):
            if not self.ids.get(kind):
                await self.make(kind)
        return self.ids[kind][0]

    async def api_credential(self, kind: str, scopes: tuple[str, ...]) -> Caller:
        """An API key (``api_key``) or OAuth client token (``client``) with ``scopes``."""
        name = f"{kind}[{' '.join(scopes)}]"
        if name in self.credentials:
            return self.credentials[name]
        if kind == "api_key":
            body = await self.create(
                "POST", "/api/v1/api-keys", json={"name": name, "scopes": list(scopes)}
            )
            token = body["key"]
        else:
            body = await self.create(
                "POST", "/api/v1/oauth/clients", json={"name": name, "scopes": list(scopes)}
            )
            r = await self.gw.post(
                "/api/v1/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": body["client_id"],
                    "client_secret": body["client_secret"],
                },
            )
            assert r.status_code == 200, r.text
            token = r.json()["access_token"]
        caller = Caller(name, {"Authorization": f"Bearer {token}"}, kind, scopes=scopes)
        self.credentials[name] = caller
        return caller


# -- factories -------------------------------------------------------------------------------

Factory = Callable[[Tenant], Awaitable[str]]


async def _user(t: Tenant) -> str:
    _token, user_id = await _invite(t.gw, t.smtp, t.owner, "sales_rep")
    return user_id


async def _invitation(t: Tenant) -> str:
    body = await t.create(
        "POST",
        "/api/v1/invitations",
        json={"email": f"{t.name('inv')}@example.com", "roles": ["viewer"]},
    )
    return body["id"]


async def _team(t: Tenant) -> str:
    return (await t.create("POST", "/api/v1/teams", json={"name": t.name("team")}))["id"]


async def _api_key(t: Tenant) -> str:
    body = await t.create(
        "POST", "/api/v1/api-keys", json={"name": t.name("key"), "scopes": ["contacts:read"]}
    )
    return body["id"]


async def _oauth_client(t: Tenant) -> str:
    body = await t.create(
        "POST", "/api/v1/oauth/clients", json={"name": t.name("client"), "scopes": ["users:read"]}
    )
    return body["id"]


async def _tenant_export(t: Tenant) -> str:
    return (await t.create("POST", "/api/v1/tenant/exports"))["id"]


async def _contact(t: Tenant) -> str:
    body = await t.create(
        "POST",
        "/api/v1/contacts",
        params={"allow_duplicate": "true"},
        json={
            "first_name": t.name("contact"),
            "last_name": "Canary",
            "emails": [{"address": f"{t.name('mail')}@example.com"}],
        },
    )
    return body["id"]


async def _company(t: Tenant) -> str:
    return (await t.create("POST", "/api/v1/companies", json={"name": t.name("company")}))["id"]


async def _view(t: Tenant) -> str:
    body = await t.create(
        "POST",
        "/api/v1/views",
        json={"entity": "contact", "name": t.name("view"), "shared": True},
    )
    return body["id"]


async def _tag(t: Tenant) -> str:
    return (await t.create("POST", "/api/v1/tags", json={"name": t.name("tag")}))["id"]


async def _custom_field(t: Tenant) -> str:
    key = f"k_{uuid.uuid4().hex[:10]}"
    body = await t.create(
        "POST",
        "/api/v1/custom-fields",
        json={"entity": "contact", "key": key, "label": t.name("field"), "type": "text"},
    )
    return body["id"]


async def _visibility_rule(t: Tenant) -> str:
    team = await _team(t)

    async def rule_set() -> bool:
        r = await t.call("PUT", f"/api/v1/visibility-rules/{team}", json={"access": "read"})
        return r.status_code in (200, 201)

    await eventually(rule_set)
    return team


async def _activity(t: Tenant) -> str:
    contact = await t.home("contact")
    body = await t.create(
        "POST",
        "/api/v1/activities",
        json={"kind": "note", "contact_id": contact, "subject": t.name("note")},
    )
    return body["id"]


async def _merge(t: Tenant) -> str:
    winner, loser = await _contact(t), await _contact(t)
    body = await t.create(
        "POST", "/api/v1/contacts/merge", json={"winner_id": winner, "loser_ids": [loser]}
    )
    return body["merge_id"]


async def _gdpr_export(t: Tenant) -> str:
    contact = await _contact(t)
    return (await t.create("POST", "/api/v1/gdpr/exports", json={"contact_id": contact}))["id"]


async def _gdpr_erasure(t: Tenant) -> str:
    contact = await _contact(t)
    body = await t.create(
        "POST", "/api/v1/gdpr/erasures", json={"contact_id": contact, "reason": "security suite"}
    )
    return body["id"]


async def _import(t: Tenant) -> str:
    email = f"{t.name('imp')}@example.com"
    body = await t.create(
        "POST",
        "/api/v1/imports",
        params={"entity": "contacts", "filename": "people.csv"},
        content=f"first_name,email\n{t.name('imported')},{email}\n".encode(),
        headers={**t.owner, "Content-Type": "text/csv"},
    )
    return body["id"]


async def _export(t: Tenant) -> str:
    body = await t.create("POST", "/api/v1/exports", json={"entity": "contacts", "format": "csv"})
    return body["id"]


FACTORIES: dict[str, Factory] = {
    "user": _user,
    "invitation": _invitation,
    "team": _team,
    "api_key": _api_key,
    "oauth_client": _oauth_client,
    "tenant_export": _tenant_export,
    "contact": _contact,
    "company": _company,
    "view": _view,
    "tag": _tag,
    "custom_field": _custom_field,
    "visibility_rule": _visibility_rule,
    "activity": _activity,
    "merge": _merge,
    "gdpr_export": _gdpr_export,
    "gdpr_erasure": _gdpr_erasure,
    "import": _import,
    "export": _export,
}


async def bounded(coros: Iterable[Awaitable[Any]], limit: int = 12) -> list[Any]:
    """Await ``coros`` with at most ``limit`` running at once (results in order)."""
    gate = asyncio.Semaphore(limit)

    async def run(c: Awaitable[Any]) -> Any:
        async with gate:
            return await c

    return await asyncio.gather(*(run(c) for c in coros))
