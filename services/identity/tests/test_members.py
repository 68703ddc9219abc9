"""Invitations (email + seats), roles, last-owner rule, teams, deactivation."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx

from crm_dev.testing import SmtpSink, eventually
from services.identity.tests.conftest import STRONG_PASSWORD, SignedUp, signup


async def _token_from_email(smtp: SmtpSink, email: str, seen: int = 0) -> str:
    async def arrived() -> list:
        found = smtp.to(email)
        return found if len(found) > seen else []

    messages = await eventually(arrived)
    body = messages[-1].get_content()
    match = re.search(r"token=([A-Za-z0-9.]+)", body)
    assert match, body
    return match.group(1)


async def _invite(
    api: httpx.AsyncClient, owner: SignedUp, roles: list[str]
) -> tuple[str, httpx.Response]:
    email = f"colleague-{uuid.uuid4().hex[:8]}@example.com"
    return email, await api.post(
        "/api/v1/invitations", json={"email": email, "roles": roles}, headers=owner.auth
    )


async def test_invite_accept_role_change_and_last_owner(
    identity_api: httpx.AsyncClient, smtp_server: SmtpSink
) -> None:
    owner = await signup(identity_api)
    email, r = await _invite(identity_api, owner, ["sales_rep"])
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"
    token = await _token_from_email(smtp_server, email)
    accepted = await identity_api.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": "Rita Rep", "password": STRONG_PASSWORD},
    )
    assert accepted.status_code == 201, accepted.text
    rep_auth = {"Authorization": f"Bearer {accepted.json()['access_token']}"}
    # The link works once.
    again = await identity_api.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": "Rita Rep", "password": STRONG_PASSWORD},
    )
    assert again.status_code == 404
    rep = (await identity_api.get("/api/v1/users/me", headers=rep_auth)).json()
    assert rep["roles"] == ["sales_rep"]
    # A rep cannot manage users; the owner can, with If-Match.
    denied = await identity_api.patch(
        f"/api/v1/users/{rep['id']}", json={"roles": ["admin"]}, headers=rep_auth
    )
    assert denied.status_code == 403
    stale = await identity_api.patch(
        f"/api/v1/users/{rep['id']}",
        json={"roles": ["sales_manager"]},
        headers={**owner.auth, "If-Match": '"999"'},
    )
    assert stale.status_code == 412
    changed = await identity_api.patch(
        f"/api/v1/users/{rep['id']}",
        json={"roles": ["sales_manager"]},
        headers={**owner.auth, "If-Match": f'"{rep["version"]}"'},
    )
    assert changed.status_code == 200 and changed.json()["roles"] == ["sales_manager"]
    # The only owner can neither demote nor deactivate themself.
    me = (await identity_api.get("/api/v1/users/me", headers=owner.auth)).json()
    demote = await identity_api.patch(
        f"/api/v1/users/{me['id']}", json={"roles": ["admin"]}, headers=owner.auth
    )
    assert demote.status_code == 409
    off = await identity_api.post(f"/api/v1/users/{me['id']}/deactivate", headers=owner.auth)
    assert off.status_code == 409
    # Deactivating the colleague ends their sessions and frees the seat.
    seats_before = (await identity_api.get("/api/v1/seats", headers=owner.auth)).json()
    gone = await identity_api.post(f"/api/v1/users/{rep['id']}/deactivate", headers=owner.auth)
    assert gone.status_code == 200 and gone.json()["status"] == "deactivated"
    seats_after = (await identity_api.get("/api/v1/seats", headers=owner.auth)).json()
    assert seats_after["used"] == seats_before["used"] - 1
    refresh = await identity_api.post(
        "/api/v1/auth/refresh", json={"refresh_token": accepted.json()["refresh_token"]}
    )
    assert refresh.status_code == 401
    login = await identity_api.post(
        "/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD}
    )
    assert login.status_code == 401


async def test_seats_are_never_exceeded_under_concurrency(identity_api: httpx.AsyncClient) -> None:
    owner = await signup(identity_api)  # free plan: 2 seats, owner holds one
    results = await asyncio.gather(*(_invite(identity_api, owner, ["viewer"]) for _ in range(6)))
    statuses = sorted(r.status_code for _, r in results)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for _, r in results]
    seats = (await identity_api.get("/api/v1/seats", headers=owner.auth)).json()
    assert seats == {
        "limit": 2,
        "active_users": 1,
        "pending_invitations": 1,
        "used": 2,
        "available": 0,
    }
    refused = next(r for _, r in results if r.status_code == 409)
    assert refused.json()["type"].endswith("seats-exhausted")
    # Revoking an invitation frees its seat.
    invitations = (
        await identity_api.get("/api/v1/invitations?status=pending", headers=owner.auth)
    ).json()
    first = invitations["data"][0]["id"]
    assert (
        await identity_api.delete(f"/api/v1/invitations/{first}", headers=owner.auth)
    ).status_code == 204
    _email, r = await _invite(identity_api, owner, ["viewer"])
    assert r.status_code == 201


async def test_resend_replaces_the_link(
    identity_api: httpx.AsyncClient, smtp_server: SmtpSink
) -> None:
    owner = await signup(identity_api)
    email, r = await _invite(identity_api, owner, ["marketer"])
    old = await _token_from_email(smtp_server, email)
    resent = await identity_api.post(
        f"/api/v1/invitations/{r.json()['id']}/resend", headers=owner.auth
    )
    assert resent.status_code == 200 and resent.json()["sent_count"] == 2
    new = await _token_from_email(smtp_server, email, seen=1)
    assert new != old
    stale = await identity_api.post(
        "/api/v1/invitations/accept",
        json={"token": old, "full_name": "Mo", "password": STRONG_PASSWORD},
    )
    assert stale.status_code == 404
    ok = await identity_api.post(
        "/api/v1/invitations/accept",
        json={"token": new, "full_name": "Mo", "password": STRONG_PASSWORD},
    )
    assert ok.status_code == 201


async def test_teams(identity_api: httpx.AsyncClient) -> None:
    owner = await signup(identity_api)
    me = (await identity_api.get("/api/v1/users/me", headers=owner.auth)).json()
    team = await identity_api.post(
        "/api/v1/teams", json={"name": "EMEA", "member_ids": [me["id"]]}, headers=owner.auth
    )
    assert team.status_code == 201 and team.json()["member_ids"] == [me["id"]]
    dup = await identity_api.post("/api/v1/teams", json={"name": "emea"}, headers=owner.auth)
    assert dup.status_code == 409
    bad = await identity_api.post(
        "/api/v1/teams", json={"name": "X", "member_ids": [str(uuid.uuid4())]}, headers=owner.auth
    )
    assert bad.status_code == 422
    tid = team.json()["id"]
    removed = await identity_api.delete(
        f"/api/v1/teams/{tid}/members/{me['id']}", headers=owner.auth
    )
    assert removed.json()["member_ids"] == []
    added = await identity_api.put(f"/api/v1/teams/{tid}/members/{me['id']}", headers=owner.auth)
    assert added.json()["member_ids"] == [me["id"]]
    user = (await identity_api.get("/api/v1/users/me", headers=owner.auth)).json()
    assert user["team_ids"] == [tid]
