"""Contact events on NATS carry the changed fields, never sensitive values."""

from __future__ import annotations

import uuid

import httpx
import msgspec

from crm_dev.testing import RunningPlatform, eventually
from crm_dev.testing_logs import remember_secret
from crm_lib.events import Event
from services.contacts.tests.conftest import CrmTenant

API = "/api/v1"


async def test_created_updated_deleted_events(
    platform_gateway: httpx.AsyncClient, crm: CrmTenant, platform: RunningPlatform
) -> None:
    gw = platform_gateway
    h = crm.auth("admin")
    key = f"passport_{uuid.uuid4().hex[:6]}"
    r = await gw.post(
        f"{API}/custom-fields",
        json={
            "entity": "contact",
            "key": key,
            "label": "Passport",
            "type": "text",
            "sensitive": True,
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    nc = await platform.runtime("contacts").nats()
    received: list[Event] = []

    async def collect(msg: object) -> None:
        received.append(msgspec.json.decode(msg.data, type=Event))  # type: ignore[attr-defined]

    sub = await nc.subscribe(f"crm.{crm.tenant_id}.contacts.contact.>", cb=collect)
    try:
        secret = remember_secret("X1234567-SECRET")
        created = await gw.post(
            f"{API}/contacts?allow_duplicate=true",
            json={"first_name": "Eve", "custom_fields": {key: secret}},
            headers=h,
        )
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        r = await gw.patch(
            f"{API}/contacts/{cid}",
            json={"title": "Director", "custom_fields": {key: remember_secret("Y7654321-SECRET")}},
            headers=h,
        )
        assert r.status_code == 200, r.text
        assert (await gw.delete(f"{API}/contacts/{cid}", headers=h)).status_code == 204

        def mine() -> list[Event]:
            return [e for e in received if e.data.get("contact_id") == cid]

        events = await eventually(lambda: len(mine()) >= 3 and mine())
    finally:
        await sub.unsubscribe()
    by_type = {e.type: e for e in events}
    assert set(by_type) == {
        "contacts.contact.created",
        "contacts.contact.updated",
        "contacts.contact.deleted",
    }
    assert all(str(e.tenant_id) == crm.tenant_id for e in events)
    changes = by_type["contacts.contact.updated"].data["changes"]
    assert changes["title"] == {"from": None, "to": "Director"}
    assert changes[f"custom_fields.{key}"] == {"from": "[sensitive]", "to": "[sensitive]"}
    assert by_type["contacts.contact.created"].data["fields"]["first_name"]["to"] == "Eve"
    raw = msgspec.json.encode([e.data for e in events]).decode()
    assert "SECRET" not in raw
    # At rest the value is ciphertext; the API shows it to admins in clear.
    async with platform.runtime("contacts").db.tenant_session(uuid.UUID(crm.tenant_id)) as session:
        from sqlalchemy import text

        stored = (
            await session.execute(
                text(
                    "SELECT sensitive_fields::text, custom_fields::text FROM contacts WHERE id = :i"
                ),
                {"i": uuid.UUID(cid)},
            )
        ).one()
    assert "SECRET" not in stored[0] and "SECRET" not in stored[1] and key in stored[0]
