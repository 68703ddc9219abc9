"""NATS is not an open bus: each service's user publishes only its own subjects.

Runs against the session's embedded NATS, configured like `make run` and the Helm chart
(``crm_lib.events.nats_permissions``): anonymous connections are refused; a service's user
can publish its own events and dead letters, and the server refuses everything else
(another service's events, stream changes, dead-letter reads, raw subscriptions).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from crm_dev.devstack import EmbeddedNats
from crm_dev.testing import NatsCredentials, SettingsFactory
from crm_lib.events import (
    DLQ_STREAM,
    EVENTS_STREAM,
    connect_nats,
    dlq_subject,
    ensure_streams,
    new_event,
    subject_for,
)

DENIED_TIMEOUT = 2.0


class Connection:
    """A NATS connection that records the server's permission violations."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: NatsClient | None = None

    async def error_cb(self, exc: Exception) -> None:
        self.errors.append(str(exc))

    async def open(self, url: str, user: str, password: str) -> Connection:
        self.nc = await nats.connect(
            url, user=user, password=password, error_cb=self.error_cb, allow_reconnect=False
        )
        return self

    def violations(self, subject: str) -> list[str]:
        return [e for e in self.errors if "permissions violation" in e and subject in e]


@pytest_asyncio.fixture(loop_scope="session")
async def streams(make_settings: SettingsFactory) -> None:
    admin = await connect_nats(make_settings("tests"))
    await ensure_streams(admin.jetstream())
    await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def as_service(
    nats_server: EmbeddedNats, nats_credentials: NatsCredentials, streams: None
) -> AsyncIterator[Any]:
    opened: list[Connection] = []

    async def connect(service: str) -> Connection:
        creds = nats_credentials.for_service(service)
        conn = await Connection().open(
            nats_server.url, creds["nats_user"], creds["nats_password"].get_secret_value()
        )
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        assert conn.nc is not None
        await conn.nc.close()


async def _last_on(js: Any, subject: str) -> Any:
    try:
        return await js.get_last_msg(EVENTS_STREAM, subject)
    except NotFoundError:
        return None


async def test_anonymous_and_wrong_password_connections_are_refused(
    nats_server: EmbeddedNats,
) -> None:
    for kw in ({}, {"user": "contacts", "password": "guess"}):
        with pytest.raises(Exception):  # noqa: B017 - nats-py raises several kinds
            await nats.connect(
                nats_server.url, allow_reconnect=False, max_reconnect_attempts=0, **kw
            )


async def test_a_service_cannot_publish_another_services_events(
    as_service: Any, make_settings: SettingsFactory
) -> None:
    tenant = uuid.uuid4()
    contacts = await as_service("contacts")
    js = contacts.nc.jetstream(timeout=DENIED_TIMEOUT)

    # Its own events: accepted into CRM_EVENTS.
    own = new_event("contacts.contact.created", tenant, {"contact_id": str(uuid.uuid4())})
    ack = await js.publish(subject_for(own.type, tenant), msgspec.json.encode(own))
    assert ack.stream == EVENTS_STREAM

    # identity's tenant deletion (would drop the tenant's schemas everywhere): refused.
    forged = new_event("identity.tenant.deletion_requested", tenant, {"slug": "victim"})
    subject = subject_for(forged.type, tenant)
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish(subject, msgspec.json.encode(forged))
    assert contacts.violations(subject), contacts.errors

    # Nor a sales deal (which would show up in a contact's timeline).
    deal = subject_for("sales.deal.created", tenant)
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish(deal, b"{}")

    admin = await connect_nats(make_settings("tests"))
    try:
        ajs = admin.jetstream()
        assert await _last_on(ajs, subject) is None  # nothing reached the stream
        assert await _last_on(ajs, deal) is None
        assert (await _last_on(ajs, subject_for(own.type, tenant))) is not None
    finally:
        await admin.close()


async def test_every_service_is_limited_to_its_own_subjects(as_service: Any) -> None:
    tenant = uuid.uuid4()
    services = ("identity", "contacts", "sales", "marketing", "support")
    for service in services:
        conn = await as_service(service)
        js = conn.nc.jetstream(timeout=DENIED_TIMEOUT)
        await js.publish(subject_for(f"{service}.probe.sent", tenant), b"{}")
        await js.publish(dlq_subject(service, f"{service}-probe"), b"{}")
        other = services[(services.index(service) + 1) % len(services)]
        denied = [
            subject_for(f"{other}.probe.sent", tenant),
            dlq_subject(other, f"{other}-probe"),
        ]
        for subject in denied:
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish(subject, b"{}")
            assert conn.violations(subject), (service, subject, conn.errors)


async def test_a_service_cannot_change_streams_or_read_dead_letters_or_eavesdrop(
    as_service: Any,
) -> None:
    """Stream changes (a republish or sources could re-emit under any subject) and the
    dead-letter stream are the admin's; core subscriptions only to its own inboxes."""
    conn = await as_service("contacts")
    js = conn.nc.jetstream(timeout=DENIED_TIMEOUT)
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_stream(StreamConfig(name="EVIL", subjects=["evil.>"]))
    with pytest.raises(nats.errors.TimeoutError):
        await js.update_stream(StreamConfig(name=DLQ_STREAM, subjects=["crmdlq.>", "evil.>"]))
    with pytest.raises(nats.errors.TimeoutError):
        await js.delete_stream(EVENTS_STREAM)
    with pytest.raises(nats.errors.TimeoutError):
        await js.pull_subscribe("crmdlq.>", stream=DLQ_STREAM)
    # The streams a worker needs are readable (ensure_streams changes nothing: no error).
    await ensure_streams(js)
    await conn.nc.subscribe("crm.>")
    await conn.nc.flush()
    await asyncio.sleep(0.2)
    assert [e for e in conn.errors if "subscription" in e and "crm.>" in e], conn.errors


async def test_a_worker_cannot_declare_missing_streams_and_says_so(
    tmp_path: Any, nats_credentials: NatsCredentials
) -> None:
    """On a NATS without the streams, a service's user gets a clear error (the admin
    declares them: `crm streams`, make run, the Helm migrations Job), not a silent hang."""
    server = nats_credentials.server(tmp_path / "nats")
    with server:
        creds = nats_credentials.for_service("sales")
        nc = await nats.connect(
            server.url,
            user=creds["nats_user"],
            password=creds["nats_password"].get_secret_value(),
            error_cb=Connection().error_cb,
        )
        try:
            with pytest.raises(RuntimeError, match="crm streams"):
                await ensure_streams(nc.jetstream(timeout=DENIED_TIMEOUT))
        finally:
            await nc.close()
