"""Issue 10, low findings: secrets shown once are never stored for replay, teams and seat
usage need a scope or a role, and only a token's own holder revokes it (RFC 7009)."""

from __future__ import annotations

import base64
import uuid

import httpx

from crm_dev.testing import RunningPlatform, SmtpSink, eventually
from services.identity.tests.conftest import SignedUp, signup
from services.identity.tests.test_authorization_matrix import _member

INTERNAL = {"Authorization": "Bearer test-internal-token"}


async def _active(api: httpx.AsyncClient, owner: SignedUp) -> None:
    async def probe() -> bool:
        r = await api.get("/api/v1/tenant", headers=owner.auth)
        return r.status_code == 200 and r.json()["tenant"]["status"] == "active"

    await eventually(probe)


async def _key_token(api: httpx.AsyncClient, owner: SignedUp, scopes: list[str]) -> dict[str, str]:
    """What the gateway forwards for an API key with ``scopes``: its minted JWT."""
    created = await api.post(
        "/api/v1/api-keys", json={"name": "k", "scopes": scopes}, headers=owner.auth
    )
    assert created.status_code == 201, created.text
    resolved = await api.post(
        "/internal/v1/api-keys/resolve", json={"key": created.json()["key"]}, headers=INTERNAL
    )
    assert resolved.status_code == 200, resolved.text
    return {"Authorization": f"Bearer {resolved.json()['access_token']}"}


async def test_secrets_shown_once_are_not_kept_by_the_idempotency_layer(
    gateway_api: httpx.AsyncClient, platform: RunningPlatform
) -> None:
    created = await gateway_api.post(
        "/api/v1/signup",
        json={
            "company_name": f"Secret {uuid.uuid4().hex[:8]}",
            "admin_name": "Sam",
            "email": f"sam-{uuid.uuid4().hex[:8]}@example.com",
            "password": "Correct-Horse-42-battery",
        },
    )
    assert created.status_code == 201, created.text
    assert "no-store" in created.headers["cache-control"]
    tenant_id = created.json()["tenant"]["id"]
    owner = {"Authorization": f"Bearer {created.json()['tokens']['access_token']}"}

    async def active() -> bool:  # as the gateway sees it (it caches the tenant's status)
        r = await gateway_api.get("/api/v1/api-keys", headers=owner)
        return r.status_code == 200

    await eventually(active)
    redis = platform.runtime("identity").redis
    for path, body, secret_field in [
        ("/api/v1/api-keys", {"name": "ETL", "scopes": ["contacts:read"]}, "key"),
        ("/api/v1/oauth/clients", {"name": "Sync", "scopes": ["contacts:read"]}, "client_secret"),
    ]:
        headers = {**owner, "Idempotency-Key": f"create-{uuid.uuid4().hex}"}
        first = await gateway_api.post(path, json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert "no-store" in first.headers["cache-control"]
        secret = first.json()[secret_field]
        stored = [k async for k in redis.scan_iter(match=f"crm:t:{tenant_id}:idem:*")]
        assert stored  # the key's use is recorded...
        for key in stored:  # ...but no copy of the secret
            assert secret.encode() not in (await redis.get(key) or b"")
        replay = await gateway_api.post(path, json=body, headers=headers)
        assert replay.status_code == 409, replay.text
        assert secret not in replay.text
        assert replay.headers["content-type"].startswith("application/problem+json")
    listed = (await gateway_api.get("/api/v1/api-keys", headers=owner)).json()["data"]
    assert len(listed) == 1  # the replay did not create a second key


async def test_teams_and_seat_usage_need_a_scope_or_a_role(
    identity_api: httpx.AsyncClient, smtp_server: SmtpSink
) -> None:
    owner = await signup(identity_api)
    await _active(identity_api, owner)
    team = await identity_api.post("/api/v1/teams", json={"name": "Sales"}, headers=owner.auth)
    assert team.status_code == 201, team.text
    team_id = team.json()["id"]

    contacts_key = await _key_token(identity_api, owner, ["contacts:read"])
    teams_key = await _key_token(identity_api, owner, ["teams:read"])
    seats_key = await _key_token(identity_api, owner, ["seats:read"])
    client = await identity_api.post(
        "/api/v1/oauth/clients",
        json={"name": "Empty", "scopes": ["contacts:read"]},
        headers=owner.auth,
    )
    basic = base64.b64encode(
        f"{client.json()['client_id']}:{client.json()['client_secret']}".encode()
    ).decode()
    token = await identity_api.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "scope": "deals:read"},  # none allowed
        headers={"Authorization": f"Basic {basic}"},
    )
    assert token.status_code == 200 and token.json()["scope"] == "", token.text
    empty_client = {"Authorization": f"Bearer {token.json()['access_token']}"}

    for who in (contacts_key, empty_client):
        for path in ("/api/v1/teams", f"/api/v1/teams/{team_id}"):
            r = await identity_api.get(path, headers=who)
            assert r.status_code == 403, (path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        tenant = await identity_api.get("/api/v1/tenant", headers=who)
        assert tenant.status_code == 200 and tenant.json()["seats"] is None
    assert (await identity_api.get("/api/v1/teams", headers=teams_key)).json()["data"][0][
        "id"
    ] == team_id
    users_key = await _key_token(identity_api, owner, ["users:read"])  # members' ids: either
    assert (await identity_api.get("/api/v1/teams", headers=users_key)).status_code == 200
    seats = (await identity_api.get("/api/v1/tenant", headers=seats_key)).json()["seats"]
    assert seats["used"] == 1

    viewer_token, _ = await _member(identity_api, smtp_server, owner.auth, "viewer")
    viewer = {"Authorization": f"Bearer {viewer_token}"}
    assert (await identity_api.get("/api/v1/tenant", headers=viewer)).json()["seats"] is None
    assert (await identity_api.get("/api/v1/teams", headers=viewer)).status_code == 200
    seats = (await identity_api.get("/api/v1/tenant", headers=owner.auth)).json()["seats"]
    assert seats["active_users"] == 2


async def test_only_a_tokens_holder_revokes_it(
    identity_api: httpx.AsyncClient, smtp_server: SmtpSink
) -> None:
    owner = await signup(identity_api)
    await _active(identity_api, owner)
    rep_token, _ = await _member(identity_api, smtp_server, owner.auth, "sales_rep")
    rep = {"Authorization": f"Bearer {rep_token}"}

    async def active(token: str) -> bool:
        r = await identity_api.post(
            "/api/v1/oauth/introspect", data={"token": token}, headers=owner.auth
        )
        return bool(r.json()["active"])

    # The owner holds the rep's token but may not end it (nor may anyone else).
    refused = await identity_api.post(
        "/api/v1/oauth/revoke", data={"token": rep_token}, headers=owner.auth
    )
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["error"] == "unauthorized_client"
    assert await active(rep_token)
    assert (await identity_api.get("/api/v1/users/me", headers=rep)).status_code == 200
    # Nonsense is accepted and ignored, as RFC 7009 asks.
    junk = await identity_api.post(
        "/api/v1/oauth/revoke", data={"token": "not-a-token"}, headers=owner.auth
    )
    assert junk.status_code == 200
    # The rep ends their own token.
    own = await identity_api.post("/api/v1/oauth/revoke", data={"token": rep_token}, headers=rep)
    assert own.status_code == 200
    assert not await active(rep_token)
