"""API keys, OAuth2 client credentials, introspection/revocation, internal endpoints."""

from __future__ import annotations

import base64

import httpx

from crm_dev.testing import RunningPlatform
from crm_identity.api_keys.service import cache_key
from crm_identity.security import parse_api_key, sha256_hex
from services.identity.tests.conftest import signup

INTERNAL = {"Authorization": "Bearer test-internal-token"}


async def test_api_key_lifecycle_and_resolution(
    identity_api: httpx.AsyncClient, platform: RunningPlatform
) -> None:
    owner = await signup(identity_api)
    created = await identity_api.post(
        "/api/v1/api-keys",
        json={"name": "ETL", "scopes": ["contacts:read", "contacts:write"]},
        headers=owner.auth,
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("crm_live_") and parse_api_key(key) is not None
    listed = (await identity_api.get("/api/v1/api-keys", headers=owner.auth)).json()["data"]
    assert listed[0]["last4"] == key[-4:] and "key" not in listed[0]

    resolved = await identity_api.post(
        "/internal/v1/api-keys/resolve", json={"key": key}, headers=INTERNAL
    )
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert body["tenant_id"] == owner.tenant_id
    assert body["scopes"] == ["contacts:read", "contacts:write"]
    # The minted token works where a principal is needed, with the key's scopes only.
    as_key = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await identity_api.get("/api/v1/users", headers=as_key)).status_code == 403
    assert (await identity_api.get("/api/v1/tenant", headers=as_key)).status_code == 200

    no_internal = await identity_api.post("/internal/v1/api-keys/resolve", json={"key": key})
    assert no_internal.status_code == 401
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert (
        await identity_api.post(
            "/internal/v1/api-keys/resolve", json={"key": tampered}, headers=INTERNAL
        )
    ).status_code == 401

    # Revocation: stops resolution and drops the gateway's cache entry.
    redis = platform.runtime("identity").redis
    await redis.set(cache_key(sha256_hex(key)), "cached", ex=60)
    revoked = await identity_api.delete(
        f"/api/v1/api-keys/{created.json()['id']}", headers=owner.auth
    )
    assert revoked.status_code == 204
    assert await redis.get(cache_key(sha256_hex(key))) is None
    assert (
        await identity_api.post(
            "/internal/v1/api-keys/resolve", json={"key": key}, headers=INTERNAL
        )
    ).status_code == 401


async def test_tenant_access_endpoint(identity_api: httpx.AsyncClient) -> None:
    owner = await signup(identity_api, plan="pro")
    r = await identity_api.get(f"/internal/v1/tenants/{owner.tenant_id}/access", headers=INTERNAL)
    assert r.status_code == 200
    assert r.json()["plan"] == "pro"
    assert r.json()["limits"]["requests_per_minute"] == 3000


async def test_oauth_client_credentials_introspect_revoke(identity_api: httpx.AsyncClient) -> None:
    owner = await signup(identity_api)
    other = await signup(identity_api)
    client = await identity_api.post(
        "/api/v1/oauth/clients",
        json={"name": "Warehouse sync", "scopes": ["contacts:read", "deals:read"]},
        headers=owner.auth,
    )
    assert client.status_code == 201, client.text
    cid, secret = client.json()["client_id"], client.json()["client_secret"]

    basic = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    token = await identity_api.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "scope": "contacts:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "contacts:read"
    access = token.json()["access_token"]

    post_auth = await identity_api.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
    )
    assert post_auth.status_code == 200
    assert set(post_auth.json()["scope"].split()) == {"contacts:read", "deals:read"}

    wrong = await identity_api.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": "nope"},
    )
    assert wrong.status_code in (400, 401) and wrong.json()["error"] == "invalid_client"
    bad_grant = await identity_api.post(
        "/api/v1/oauth/token",
        data={"grant_type": "password", "client_id": cid, "client_secret": secret},
    )
    assert bad_grant.status_code == 400

    seen = await identity_api.post(
        "/api/v1/oauth/introspect", data={"token": access}, headers=owner.auth
    )
    assert seen.json()["active"] is True and seen.json()["client_id"] == cid
    assert seen.json()["exp"] > seen.json()["iat"] and seen.json()["aud"] == "crm-api"
    # Another tenant never learns anything about this token.
    foreign = await identity_api.post(
        "/api/v1/oauth/introspect", data={"token": access}, headers=other.auth
    )
    assert foreign.json() == {"active": False}
    await identity_api.post("/api/v1/oauth/revoke", data={"token": access}, headers=other.auth)
    still = await identity_api.post(
        "/api/v1/oauth/introspect", data={"token": access}, headers=owner.auth
    )
    assert still.json()["active"] is True
    # Only the client the token was issued to revokes it (RFC 7009 §2.1), not the owner.
    refused = await identity_api.post(
        "/api/v1/oauth/revoke", data={"token": access}, headers=owner.auth
    )
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    out = await identity_api.post(
        "/api/v1/oauth/revoke",
        data={"token": access},
        headers={"Authorization": f"Bearer {access}"},
    )
    assert out.status_code == 200
    dead = await identity_api.post(
        "/api/v1/oauth/introspect", data={"token": access}, headers=owner.auth
    )
    assert dead.json() == {"active": False}

    revoked = await identity_api.delete(
        f"/api/v1/oauth/clients/{client.json()['id']}", headers=owner.auth
    )
    assert revoked.status_code == 204
    after = await identity_api.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
    )
    assert after.status_code in (400, 401)


async def test_jwks_and_plans_are_public(identity_api: httpx.AsyncClient) -> None:
    jwks = await identity_api.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert all(k["kty"] == "EC" and "d" not in k for k in jwks.json()["keys"])
    plans = await identity_api.get("/api/v1/plans")
    assert {p["id"] for p in plans.json()["data"]} == {"free", "pro", "enterprise"}


async def test_tenant_export_gathers_every_service(identity_api: httpx.AsyncClient) -> None:
    import gzip
    import io
    import json
    import zipfile

    from crm_dev.testing import eventually

    owner = await signup(identity_api)
    other = await signup(identity_api)

    async def active() -> bool:
        r = await identity_api.get("/api/v1/tenant", headers=owner.auth)
        return r.json()["tenant"]["status"] == "active"

    await eventually(active)
    await identity_api.post("/api/v1/teams", json={"name": "Exported team"}, headers=owner.auth)
    started = await identity_api.post("/api/v1/tenant/exports", headers=owner.auth)
    assert started.status_code == 202, started.text
    job = started.json()["id"]

    async def ready() -> dict | None:
        r = await identity_api.get(f"/api/v1/tenant/exports/{job}", headers=owner.auth)
        return r.json() if r.json()["status"] == "ready" else None

    done = await eventually(ready, timeout=60)
    assert set(done["services"]) == {"identity", "contacts", "sales", "marketing", "support"}
    # Another tenant cannot see or download it.
    assert (
        await identity_api.get(f"/api/v1/tenant/exports/{job}", headers=other.auth)
    ).status_code == 404
    r = await identity_api.get(done["download_url"], headers=owner.auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/zip")
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert set(archive.namelist()) == {
        "manifest.json",
        "identity.jsonl.gz",
        "contacts.jsonl.gz",
        "sales.jsonl.gz",
        "marketing.jsonl.gz",
        "support.jsonl.gz",
    }
    lines = [
        json.loads(line) for line in gzip.decompress(archive.read("identity.jsonl.gz")).splitlines()
    ]
    users = [x["row"] for x in lines if x["table"] == "users"]
    assert [u["email"] for u in users] == [owner.email]
    assert "password_hash" not in users[0]  # credentials never leave identity
    assert not [x for x in lines if x["table"] == "refresh_tokens"]
    assert [x["row"]["name"] for x in lines if x["table"] == "teams"] == ["Exported team"]
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["tenant_id"] == owner.tenant_id
