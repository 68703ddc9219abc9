"""Outbox relay and consumers against a NATS server that goes away and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import func, select

from crm_contacts.app import SCHEMA as CONTACTS_SCHEMA
from crm_contacts.models import Company
from crm_dev.devstack import EmbeddedNats
from crm_dev.testing import NatsCredentials
from crm_lib.events import (
    DLQ_ROOT,
    DLQ_STREAM,
    EventContext,
    EventWorker,
    OutboxRelay,
    Subscription,
    connect_nats,
    emit,
    ensure_streams,
    new_event,
    subject_for,
)
from crm_lib.migrations import provision_schema
from crm_lib.platform_tables import OutboxRow, TenantRegistryRow
from crm_lib.settings import PlatformSettings
from crm_lib.tenancy import Database, tenant_schema
from tests.foundation.helpers import eventually

EVENT = "contacts.probe.recorded"


@pytest.fixture
def private_nats(tmp_path: Path, nats_credentials: NatsCredentials) -> EmbeddedNats:
    server = nats_credentials.server(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


async def _register(db: Database, tenant_id: uuid.UUID) -> None:
    async with db.tenant_connection(tenant_id) as conn:
        await provision_schema(conn, tenant_id, CONTACTS_SCHEMA)
    async with db.platform_session() as session:
        session.add(
            TenantRegistryRow(
                tenant_id=tenant_id,
                status="active",
                schema_name=tenant_schema(tenant_id),
                schema_version=CONTACTS_SCHEMA.tenant_track.head,
            )
        )


async def _record_effect(ctx: EventContext) -> None:
    if ctx.event.data.get("fail"):
        raise RuntimeError("this event can never be applied")
    # The effect: one company row per event, named after the event id.
    ctx.session.add(Company(id=uuid.uuid4(), name=str(ctx.event.id)))


@pytest_asyncio.fixture(loop_scope="session")
async def running(
    scratch_settings: PlatformSettings,
    scratch_db: Database,
    private_nats: EmbeddedNats,
    nats_credentials: NatsCredentials,
) -> AsyncIterator[tuple[PlatformSettings, Database, OutboxRelay, EventWorker]]:
    settings = scratch_settings.model_copy(
        update={"nats_url": private_nats.url, "consumer_max_deliver": 3}
    )
    # Streams are declared by the admin; the service's own user may not create them.
    admin = await connect_nats(settings.model_copy(update=nats_credentials.for_service("platform")))
    await ensure_streams(admin.jetstream())
    await admin.close()
    nc = await connect_nats(settings)
    js = nc.jetstream()
    relay = OutboxRelay(scratch_db, js, settings)
    worker = EventWorker(
        scratch_db, js, settings, [Subscription("probe", [EVENT], _record_effect, batch=50)]
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(worker.run(stop))]
    yield settings, scratch_db, relay, worker
    stop.set()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
    await nc.close()


async def _effects(db: Database, tenant_id: uuid.UUID) -> dict[str, int]:
    async with db.tenant_session(tenant_id) as session:
        rows = await session.execute(select(Company.name, func.count()).group_by(Company.name))
        return {name: n for name, n in rows.all()}


async def test_outbox_survives_nats_outage_and_effects_happen_once(
    running: tuple[PlatformSettings, Database, OutboxRelay, EventWorker],
    private_nats: EmbeddedNats,
) -> None:
    settings, db, _relay, worker = running
    tenant_id = uuid.uuid4()
    await _register(db, tenant_id)

    private_nats.stop()
    event_ids = []
    for i in range(100):
        async with db.tenant_session(tenant_id) as session:
            event = await emit(session, EVENT, tenant_id, {"n": i})
            event_ids.append(str(event.id))

    async def pending() -> int:
        async with db.platform_session() as session:
            return int(
                (
                    await session.execute(
                        select(func.count())
                        .where(OutboxRow.published_at.is_(None))
                        .where(OutboxRow.tenant_id == tenant_id)
                    )
                ).scalar_one()
            )

    assert await pending() == 100  # nothing lost, nothing published while NATS is down
    private_nats.start()

    async def all_applied() -> dict[str, int] | None:
        effects = await _effects(db, tenant_id)
        return effects if len(effects) == 100 else None

    effects = await eventually(all_applied, timeout=60)
    assert set(effects) == set(event_ids)
    assert set(effects.values()) == {1}
    assert await pending() == 0

    # A duplicate delivery (same event id, new broker message id) has no second effect.
    nc = await connect_nats(settings)
    js = nc.jetstream()
    async with db.platform_session() as session:
        row = (
            await session.execute(select(OutboxRow).where(OutboxRow.id == uuid.UUID(event_ids[0])))
        ).scalar_one()
    await js.publish(row.subject, row.payload, headers={"Nats-Msg-Id": str(uuid.uuid4())})
    before = worker.processed
    await eventually(lambda: worker.processed > before, timeout=30)
    assert (await _effects(db, tenant_id))[event_ids[0]] == 1
    await nc.close()


async def test_poison_messages_land_in_the_dead_letter_stream(
    running: tuple[PlatformSettings, Database, OutboxRelay, EventWorker],
    nats_credentials: NatsCredentials,
) -> None:
    settings, db, _relay, _worker = running
    tenant_id = uuid.uuid4()
    await _register(db, tenant_id)
    async with db.tenant_session(tenant_id) as session:
        failing = await emit(session, EVENT, tenant_id, {"fail": True})
    nc = await connect_nats(settings)
    js = nc.jetstream()
    # Undecodable bytes on a subscribed subject: dead-lettered at once.
    await js.publish(
        subject_for(EVENT, tenant_id),
        b"\x00not an event",
        headers={"Nats-Msg-Id": str(uuid.uuid4())},
    )

    # Dead letters are read by the admin (a service's user has no consumers on CRM_DLQ).
    admin = await connect_nats(settings.model_copy(update=nats_credentials.for_service("ops")))
    dlq = await admin.jetstream().pull_subscribe(
        f"{DLQ_ROOT}.>",
        stream=DLQ_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )

    collected: list = []

    async def both_dead() -> bool:
        with contextlib.suppress(TimeoutError):
            collected.extend(await dlq.fetch(10, timeout=0.5))
        mine = [
            m
            for m in collected
            if m.headers.get("Crm-Dlq-Subject") == subject_for(EVENT, tenant_id)
        ]
        return len(mine) >= 2

    await eventually(both_dead, timeout=30)
    mine = [
        m for m in collected if m.headers.get("Crm-Dlq-Subject") == subject_for(EVENT, tenant_id)
    ]
    by_payload = {m.data: m for m in mine}
    assert by_payload[b"\x00not an event"].headers["Crm-Dlq-Delivered"] == "1"
    failing_msg = next(m for m in mine if m.data != b"\x00not an event")
    assert msgspec.json.decode(failing_msg.data)["id"] == str(failing.id)
    # Retried up to max_deliver before giving up, and the effect never happened.
    assert failing_msg.headers["Crm-Dlq-Delivered"] == str(settings.consumer_max_deliver)
    assert "never be applied" in failing_msg.headers["Crm-Dlq-Error"]
    assert await _effects(db, tenant_id) == {}
    # Each service dead-letters under its own name (its NATS user may publish nothing else).
    assert {m.subject for m in mine} == {f"{DLQ_ROOT}.contacts.contacts-probe"}
    await nc.close()
    await admin.close()


async def test_forged_messages_are_dead_lettered_and_change_nothing(
    running: tuple[PlatformSettings, Database, OutboxRelay, EventWorker],
    nats_credentials: NatsCredentials,
) -> None:
    """A message whose subject names tenant A / one service while its envelope says tenant B
    or another service's type is never applied: straight to CRM_DLQ (published here by the
    admin user, the only one that may publish any subject)."""
    settings, db, _relay, _worker = running
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    await _register(db, tenant_a)
    await _register(db, tenant_b)
    admin = await connect_nats(settings.model_copy(update=nats_credentials.for_service("ops")))
    js = admin.jetstream()
    subject_a = subject_for(EVENT, tenant_a)
    forged = {
        "other tenant": new_event(EVENT, tenant_b, {"forged": "tenant"}),
        "other service": new_event("sales.probe.recorded", tenant_a, {"forged": "service"}),
        "other entity": new_event("contacts.other.recorded", tenant_a, {"forged": "entity"}),
    }
    for event in forged.values():
        await js.publish(
            subject_a, msgspec.json.encode(event), headers={"Nats-Msg-Id": str(event.id)}
        )
    # A genuine event published after them is applied: the consumer went past the forgeries.
    genuine = new_event(EVENT, tenant_a, {"n": 1})
    await js.publish(
        subject_a, msgspec.json.encode(genuine), headers={"Nats-Msg-Id": str(genuine.id)}
    )

    dlq = await js.pull_subscribe(
        f"{DLQ_ROOT}.>",
        stream=DLQ_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    collected: list = []

    async def all_dead() -> list | None:
        with contextlib.suppress(TimeoutError):
            collected.extend(await dlq.fetch(50, timeout=0.5))
        ids = {str(e.id) for e in forged.values()}
        mine = [m for m in collected if msgspec.json.decode(m.data).get("id") in ids]
        return mine if len(mine) == len(ids) else None

    dead = await eventually(all_dead, timeout=30)
    for msg in dead:
        assert msg.headers["Crm-Dlq-Subject"] == subject_a
        assert msg.headers["Crm-Dlq-Delivered"] == "1"  # at once, never retried
        assert "does not match the envelope" in msg.headers["Crm-Dlq-Error"]

    async def genuine_applied() -> bool:
        return str(genuine.id) in await _effects(db, tenant_a)

    await eventually(genuine_applied, timeout=30)
    assert await _effects(db, tenant_a) == {str(genuine.id): 1}
    assert await _effects(db, tenant_b) == {}
    await admin.close()
