"""The event backbone: envelope, subjects, transactional outbox, relay, consumers.

* ``emit`` writes an outbox row in the caller's transaction (with the current
  W3C trace context), so an event exists iff the business change committed.
* ``OutboxRelay`` publishes pending rows to JetStream (``Nats-Msg-Id`` = event
  id, so broker-side dedup absorbs relay retries), woken by ``LISTEN`` on the
  outbox trigger and polling as a fallback. While NATS is down rows simply wait.
* ``EventWorker`` runs durable pull consumers with explicit acks. Each message
  is one transaction: the inbox row ``(consumer, event_id)`` and the handler's
  effect commit together, so a redelivery has no second effect. Failures are
  retried with backoff; after ``max_deliver`` the message is copied to the
  dead-letter stream and terminated (JetStream has no DLQ of its own).

Subjects: ``crm.<tenant_id>.<service>.<entity>.<action>``; a consumer applies a message
only if its subject is exactly the envelope's (``check_subject``), and each service's NATS
user may publish only its own subjects (``nats_permissions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Text, any_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_lib.platform_tables import InboxRow, OutboxRow, TenantRegistryRow
from crm_lib.settings import PlatformSettings
from crm_lib.telemetry import (
    describe_error,
    extract_context,
    get_logger,
    inject_headers,
    tracer,
    tracing_enabled,
)
from crm_lib.tenancy import Database, parse_tenant_id

log = get_logger("crm.events")

EVENTS_STREAM = "CRM_EVENTS"
DLQ_STREAM = "CRM_DLQ"
SUBJECT_ROOT = "crm"
DLQ_ROOT = "crmdlq"
_EVENT_TYPE_RE = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_]*\.[a-z][a-z_]*$")
_PATTERN_TOKEN_RE = re.compile(r"^([a-z][a-z_]*|\*)$")
_DURABLE_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """The envelope every event travels in (PRODUCT.md, Events)."""

    id: uuid.UUID
    type: str
    tenant_id: uuid.UUID
    occurred_at: datetime
    actor: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    schema_version: int = 1


def validate_event_type(event_type: str) -> str:
    if not _EVENT_TYPE_RE.match(event_type):
        raise ValueError(f"event type must be '<service>.<entity>.<action>': {event_type!r}")
    return event_type


def subject_for(event_type: str, tenant_id: uuid.UUID | str) -> str:
    """The NATS subject of an event; the tenant token is a validated UUID."""
    return f"{SUBJECT_ROOT}.{parse_tenant_id(tenant_id)}.{validate_event_type(event_type)}"


def subject_filter(pattern: str, tenant_id: uuid.UUID | str | None = None) -> str:
    """Filter for a type pattern such as ``identity.tenant.created`` or ``*.tenant.provisioned``."""
    tokens = pattern.split(".")
    if len(tokens) != 3 or not all(_PATTERN_TOKEN_RE.match(t) for t in tokens):
        raise ValueError(f"bad event type pattern {pattern!r}")
    tenant = str(parse_tenant_id(tenant_id)) if tenant_id is not None else "*"
    return f"{SUBJECT_ROOT}.{tenant}.{pattern}"


def dlq_subject(service: str, consumer: str) -> str:
    """Dead letters of ``consumer`` (``<service>-<subscription>``): ``crmdlq.<service>.<consumer>``.

    The service token lets each service's NATS user publish only its own dead letters.
    """
    return f"{DLQ_ROOT}.{service}.{consumer}"


def new_event(
    event_type: str,
    tenant_id: uuid.UUID | str,
    data: dict[str, Any] | None = None,
    *,
    actor: str | None = None,
    schema_version: int = 1,
) -> Event:
    return Event(
        id=uuid.uuid4(),
        type=validate_event_type(event_type),
        tenant_id=parse_tenant_id(tenant_id),
        occurred_at=datetime.now(UTC),
        actor=actor,
        data=data or {},
        schema_version=schema_version,
    )


_encoder = msgspec.json.Encoder()
_UUID_ARRAY = ARRAY(PG_UUID(as_uuid=True))
_decode_headers = msgspec.json.Decoder(dict[str, str]).decode


async def emit(
    session: AsyncSession,
    event_type: str,
    tenant_id: uuid.UUID | str,
    data: dict[str, Any] | None = None,
    *,
    actor: str | None = None,
    schema_version: int = 1,
) -> Event:
    """Write an event to the outbox inside the caller's transaction."""
    event = new_event(event_type, tenant_id, data, actor=actor, schema_version=schema_version)
    await session.execute(
        insert(OutboxRow).values(
            id=event.id,
            tenant_id=event.tenant_id,
            event_type=event.type,
            subject=subject_for(event.type, event.tenant_id),
            payload=_encoder.encode(event),
            headers=inject_headers(),
        )
    )
    return event


# --------------------------------------------------------------------------- NATS


def redact_url(url: str) -> str:
    """``url`` without the password of its userinfo part (for logs)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def connect_nats(
    settings: PlatformSettings, *, name: str | None = None, wait: bool = True
) -> NatsClient:
    """Connect with endless reconnects; keep trying the first connect if ``wait``.

    Authenticates as ``CRM_NATS_USER`` / ``CRM_NATS_PASSWORD`` when set (a service's own
    user, whose publish rights cover only its own subjects: ``nats_permissions``).
    """
    credentials: dict[str, str] = {}
    if settings.nats_user:
        credentials["user"] = settings.nats_user
        if settings.nats_password is not None:
            credentials["password"] = settings.nats_password.get_secret_value()
    while True:
        try:
            return await nats.connect(
                servers=[settings.nats_url],
                name=name or f"crm-{settings.service_name}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                allow_reconnect=True,
                **credentials,  # type: ignore[arg-type]
            )
        except Exception as exc:
            if not wait:
                raise
            log.warning(
                "nats.connect_failed",
                url=redact_url(settings.nats_url),
                user=settings.nats_user,
                error=type(exc).__name__,
            )
            await asyncio.sleep(0.5)


# --------------------------------------------------------------------------- NATS users

#: The NATS user with every right: declares streams and the export bucket (``crm streams``,
#: ``make run``'s preparation, the Helm migrations Job) and reads dead letters. Services never
#: run as it.
NATS_ADMIN_USER = "crm-admin"
#: JetStream object store bucket of tenant and GDPR exports (``crm_lib.exports``).
_EXPORT_BUCKET = "crm-exports"


def nats_permissions(service: str) -> dict[str, Any]:
    """The rights of ``service``'s NATS user, as a nats-server ``permissions`` block.

    * publish events only under its own name (``crm.*.<service>.>``) and dead letters only of
      its own consumers (``crmdlq.<service>.>``): a contacts process cannot forge
      ``identity.tenant.deletion_requested``;
    * the JetStream API it needs (stream info, its durable pull consumers, acks, message
      gets of the export bucket), the export bucket's objects; never creating, changing,
      deleting or purging streams (a stream's republish/sources could re-emit messages
      under subjects the user may not publish itself), never deleting messages;
    * core subscriptions only to its reply inboxes (``_INBOX.>``) and its own events:
      other services' events reach it only through its JetStream consumers.

    The Helm chart renders the same rules (``crm.natsPermissions``); tests/helm checks it.
    """
    if not re.match(r"^[a-z][a-z_]*$", service):
        raise ValueError(f"bad service name {service!r}")
    bucket_stream = f"OBJ_{_EXPORT_BUCKET}"
    return {
        "publish": {
            "allow": [
                f"{SUBJECT_ROOT}.*.{service}.>",
                f"{DLQ_ROOT}.{service}.>",
                f"$O.{_EXPORT_BUCKET}.>",
                "$JS.API.INFO",
                "$JS.API.STREAM.NAMES",
                "$JS.API.STREAM.LIST",
                "$JS.API.STREAM.INFO.*",
                f"$JS.API.STREAM.MSG.GET.{bucket_stream}",
                f"$JS.API.DIRECT.GET.{bucket_stream}",
                f"$JS.API.DIRECT.GET.{bucket_stream}.>",
                f"$JS.API.STREAM.PURGE.{bucket_stream}",
                # Durable pull consumers on the event stream (names "<service>-<sub>") and
                # the ordered consumers that read objects of the export bucket; no other
                # stream's consumers (the dead letters are read by the admin only).
                f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.>",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{EVENTS_STREAM}.*",
                f"$JS.API.CONSUMER.INFO.{EVENTS_STREAM}.*",
                f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.*",
                f"$JS.API.CONSUMER.CREATE.{bucket_stream}",
                f"$JS.API.CONSUMER.CREATE.{bucket_stream}.>",
                f"$JS.API.CONSUMER.INFO.{bucket_stream}.*",
                f"$JS.API.CONSUMER.DELETE.{bucket_stream}.*",
                "$JS.ACK.>",
                "$JS.FC.>",
            ],
        },
        "subscribe": {"allow": ["_INBOX.>", f"{SUBJECT_ROOT}.*.{service}.>"]},
    }


async def ensure_streams(js: JetStreamContext) -> None:
    """Declare the event and dead-letter streams and the export bucket (idempotent).

    Creating or changing them needs the NATS admin; when they already match, nothing is
    sent that a service's own user may not do (workers call this at start).
    """
    configs = [
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[f"{SUBJECT_ROOT}.>"],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            max_age=7 * 24 * 3600,
            duplicate_window=15 * 60,
        ),
        StreamConfig(
            name=DLQ_STREAM,
            subjects=[f"{DLQ_ROOT}.>"],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            max_age=30 * 24 * 3600,
        ),
    ]
    for config in configs:
        try:
            info = await js.stream_info(str(config.name))
        except NotFoundError:
            info = None
        # Only an actual change is sent: a service's NATS user may read stream info but
        # never create or change a stream (nats_permissions); the admin declares them.
        if info is not None and not _stream_differs(info.config, config):
            continue
        try:
            if info is None:
                await js.add_stream(config)
            else:
                await js.update_stream(config)
        except nats.errors.TimeoutError as exc:  # a permissions violation gets no answer
            raise RuntimeError(
                f"stream {config.name} is missing or outdated and could not be declared "
                "(a service's NATS user may not: run `crm streams` as the NATS admin)"
            ) from exc
    from crm_lib.exports import export_store  # (imports this module)

    await export_store(js)


def _stream_differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    fields = ("subjects", "storage", "retention", "max_age", "duplicate_window")
    for name in fields:
        have, want = getattr(current, name), getattr(wanted, name)
        if name == "subjects":
            have, want = sorted(have or []), sorted(want or [])
        elif name in ("max_age", "duplicate_window"):
            if not want:  # not declared: the server's default stands
                continue
            have = float(have or 0)
            want = float(want)
        if have != want:
            return True
    return False


# --------------------------------------------------------------------------- relay


class OutboxRelay:
    """Moves committed outbox rows to JetStream."""

    def __init__(
        self,
        db: Database,
        js: JetStreamContext,
        settings: PlatformSettings,
    ) -> None:
        self.db = db
        self.js = js
        self.settings = settings
        self._wake = asyncio.Event()
        self._tracer = tracer(f"{settings.service_name}.outbox")
        self.published = 0

    _PENDING = (
        select(
            OutboxRow.id,
            OutboxRow.subject,
            OutboxRow.payload,
            # As text, decoded once by msgspec (the JSONB path decodes twice, in json).
            OutboxRow.headers.cast(Text).label("headers_json"),
        )
        .where(OutboxRow.published_at.is_(None))
        .order_by(OutboxRow.created_at)
        .with_for_update(skip_locked=True)
    )

    async def _publish(self, row: Any) -> asyncio.Future[Any]:
        """Send one row without waiting for its ack (pipelined); returns the ack future."""
        if not tracing_enabled():
            # No spans to record: forward the writer's trace context as it is.
            headers = {**_decode_headers(row.headers_json), "Nats-Msg-Id": str(row.id)}
            return await self.js.publish_async(row.subject, row.payload, headers=headers)
        parent = extract_context(_decode_headers(row.headers_json))
        with self._tracer.start_as_current_span(
            f"{row.subject} publish",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": row.subject,
                "messaging.message.id": str(row.id),
            },
        ):
            headers = inject_headers({"Nats-Msg-Id": str(row.id)})
            # No wait_stall: with a timeout nats-py schedules a task per call, which lets
            # its flusher send every message on its own (one syscall each) instead of
            # coalescing the batch.
            return await self.js.publish_async(row.subject, row.payload, headers=headers)

    async def flush_once(self) -> int:
        """Publish one batch; returns how many rows were published.

        Every row of the batch is sent before any ack is awaited; rows whose ack did
        not come back stay pending (JetStream dedups a later resend by event id).
        """
        async with self.db.engine.begin() as conn:
            rows = (await conn.execute(self._PENDING.limit(self.settings.outbox_batch_size))).all()
            if not rows:
                return 0
            futures: list[asyncio.Future[Any] | BaseException] = []
            for row in rows:
                try:
                    futures.append(await self._publish(row))
                except Exception as exc:  # NATS away: the rest would fail the same way
                    futures.extend([exc] * (len(rows) - len(futures)))
                    break
            pending = [f for f in futures if isinstance(f, asyncio.Future)]
            if pending:
                await asyncio.wait(pending, timeout=5)
            done: list[Any] = []
            failed: list[tuple[Any, BaseException]] = []
            for row, fut in zip(rows, futures, strict=True):
                if isinstance(fut, BaseException):
                    failed.append((row.id, fut))
                elif not fut.done():
                    fut.cancel()
                    failed.append((row.id, TimeoutError("no ack from JetStream")))
                elif fut.exception() is not None:
                    failed.append((row.id, fut.exception()))  # type: ignore[arg-type]
                else:
                    done.append(row.id)
            if done:
                # One array parameter instead of an IN list of a thousand binds.
                await conn.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == any_(bindparam("ids", done, type_=_UUID_ARRAY)))
                    .values(published_at=func.now())
                )
            if failed:
                await conn.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id.in_([row_id for row_id, _ in failed]))
                    .values(
                        attempts=OutboxRow.attempts + 1,
                        last_error=describe_error(failed[0][1])[:1000],
                    )
                )
        self.published += len(done)
        if failed:
            raise ConnectionError(f"{len(failed)} outbox publishes failed: {failed[0][1]!r}")
        return len(done)

    async def purge_published(self, older_than_hours: int = 24) -> int:
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                text(
                    "DELETE FROM platform.outbox "
                    "WHERE published_at < now() - make_interval(hours => :h)"
                ),
                {"h": older_than_hours},
            )
            return result.rowcount or 0

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN for outbox inserts; reconnects forever."""
        import asyncpg
        from sqlalchemy.engine import make_url

        url = make_url(self.settings.async_database_url)
        while not stop.is_set():
            conn = None
            try:
                conn = await asyncpg.connect(
                    host=url.host,
                    port=url.port,
                    user=url.username,
                    password=url.password,
                    database=url.database,
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda *_, lost=lost: lost.set())
                await conn.add_listener("crm_outbox", lambda *_: self._wake.set())
                self._wake.set()  # catch up on anything committed while not listening
                waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
            except Exception:
                await asyncio.sleep(1)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop))
        backoff = 0.2
        last_purge = time.monotonic()
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    n = await self.flush_once()
                    backoff = 0.2
                except Exception as exc:  # NATS or DB down: rows stay, retry later
                    log.warning("outbox.flush_failed", error=describe_error(exc))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if n >= self.settings.outbox_batch_size:
                    continue
                if time.monotonic() - last_purge > 3600:
                    last_purge = time.monotonic()
                    with contextlib.suppress(Exception):
                        await self.purge_published()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=self.settings.outbox_poll_interval_seconds
                    )
        finally:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener


# --------------------------------------------------------------------------- consumers


@dataclass
class EventContext:
    """What a handler gets: the event and the one transaction it runs in."""

    event: Event
    session: AsyncSession
    db: Database
    consumer: str
    subject: str
    js: JetStreamContext | None = None

    async def emit(
        self,
        event_type: str,
        data: dict[str, Any] | None = None,
        *,
        tenant_id: uuid.UUID | str | None = None,
        actor: str | None = None,
    ) -> Event:
        return await emit(
            self.session,
            event_type,
            tenant_id if tenant_id is not None else self.event.tenant_id,
            data,
            actor=actor,
        )


Handler = Callable[[EventContext], Awaitable[None]]


@dataclass
class Subscription:
    """A durable consumer: which event types it takes and what it does with them.

    ``scope="tenant"`` runs the handler in a session bound to the event's tenant
    (and skips events of tenants this service does not know or has deleted);
    ``scope="platform"`` runs it in a platform session (lifecycle handlers).
    """

    name: str
    event_types: Sequence[str]
    handler: Handler
    scope: Literal["tenant", "platform"] = "tenant"
    max_deliver: int | None = None
    batch: int = 100
    # Tenants processed at once within a fetched batch (each tenant stays in order).
    concurrency: int = 8

    def __post_init__(self) -> None:
        if not _DURABLE_RE.match(self.name):
            raise ValueError(f"bad consumer name {self.name!r}")
        for pattern in self.event_types:
            subject_filter(pattern)


class TenantNotReady(Exception):
    """The event's tenant is not (yet) in this service's registry replica."""


class PoisonMessage(Exception):
    """A message that can never be processed (undecodable, invalid tenant, forged subject)."""


def _consumer_error(exc: BaseException) -> str:
    """What logs and dead-letter headers say about a failed message: our own reasons in
    full, anything else without its text (a database error quotes the row's values)."""
    if isinstance(exc, PoisonMessage | TenantNotReady):
        return f"{type(exc).__name__}: {exc}"
    return describe_error(exc)


def check_subject(subject: str, event: Event) -> None:
    """The subject must be exactly the envelope's: ``crm.<tenant_id>.<type>``.

    NATS checks who may publish a subject (a service only its own, ``nats_permissions``),
    not what the payload claims: a message whose envelope names another tenant or another
    service's event type than its subject is forged and is never applied.
    """
    try:
        expected = subject_for(event.type, event.tenant_id)
    except ValueError as exc:
        raise PoisonMessage(f"invalid envelope: {exc}") from exc
    if subject != expected:
        raise PoisonMessage(
            f"subject {subject!r} does not match the envelope "
            f"(tenant {event.tenant_id}, type {event.type!r})"
        )


@dataclass
class EventWorker:
    """Runs a service's subscriptions against JetStream."""

    db: Database
    js: JetStreamContext
    settings: PlatformSettings
    subscriptions: Sequence[Subscription]
    processed: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def durable_name(self, sub: Subscription) -> str:
        return f"{self.settings.service_name}-{sub.name}"

    def _config(self, sub: Subscription) -> ConsumerConfig:
        filters = [subject_filter(p) for p in sub.event_types]
        return ConsumerConfig(
            durable_name=self.durable_name(sub),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=sub.max_deliver or self.settings.consumer_max_deliver,
            ack_wait=self.settings.consumer_ack_wait_seconds,
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=filters if len(filters) > 1 else None,
            max_ack_pending=10_000,
        )

    async def ensure_consumers(self) -> None:
        for sub in self.subscriptions:
            await self.js.add_consumer(EVENTS_STREAM, self._config(sub))

    async def run(self, stop: asyncio.Event) -> None:
        self._tasks = [asyncio.create_task(self._run_one(sub, stop)) for sub in self.subscriptions]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for t in self._tasks:
                t.cancel()

    async def _run_one(self, sub: Subscription, stop: asyncio.Event) -> None:
        psub = None
        while not stop.is_set():
            try:
                if psub is None:
                    await self.js.add_consumer(EVENTS_STREAM, self._config(sub))
                    psub = await self.js.pull_subscribe_bind(
                        durable=self.durable_name(sub), stream=EVENTS_STREAM
                    )
                try:
                    msgs = await psub.fetch(sub.batch, timeout=1.0)
                except TimeoutError:
                    continue
                await self._process_batch(sub, msgs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away: keep trying
                log.warning("consumer.fetch_failed", consumer=sub.name, error=describe_error(exc))
                if psub is not None:
                    with contextlib.suppress(Exception):
                        await psub.unsubscribe()
                psub = None
                await asyncio.sleep(0.5)

    async def _process_batch(self, sub: Subscription, msgs: list[Msg]) -> None:
        """Tenants in parallel, each tenant's messages in order.

        Events of one tenant keep their stream order (a tenant's creation is handled
        before its later events); different tenants never wait for each other.
        """
        by_tenant: dict[str, list[Msg]] = {}
        for msg in msgs:
            tokens = msg.subject.split(".")
            by_tenant.setdefault(tokens[1] if len(tokens) > 1 else "", []).append(msg)
        if len(by_tenant) == 1:
            for msg in msgs:
                await self.process(sub, msg)
            return
        limit = asyncio.Semaphore(sub.concurrency)

        async def run(group: list[Msg]) -> None:
            async with limit:
                for msg in group:
                    await self.process(sub, msg)

        await asyncio.gather(*(run(group) for group in by_tenant.values()))

    async def process(self, sub: Subscription, msg: Msg) -> None:
        consumer = self.durable_name(sub)
        delivered = msg.metadata.num_delivered if msg.metadata else 1
        max_deliver = sub.max_deliver or self.settings.consumer_max_deliver
        parent = extract_context(dict(msg.headers or {}))
        with tracer(f"{self.settings.service_name}.consumer").start_as_current_span(
            f"{msg.subject} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": msg.subject,
                "messaging.consumer.group.name": consumer,
                "messaging.message.delivery_count": delivered,
            },
        ) as span:
            try:
                try:
                    event = msgspec.json.decode(msg.data, type=Event)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise PoisonMessage(f"undecodable event: {exc}") from exc
                span.set_attribute("messaging.message.id", str(event.id))
                check_subject(msg.subject, event)
                await self._apply(sub, consumer, event, msg.subject)
                await msg.ack()
                self.processed += 1
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR))
                if isinstance(exc, PoisonMessage) or delivered >= max_deliver:
                    await self._dead_letter(consumer, msg, exc, delivered)
                    await msg.term()
                else:
                    backoff = self.settings.consumer_backoff_seconds
                    delay = backoff[min(delivered - 1, len(backoff) - 1)] if backoff else 1.0
                    log.warning(
                        "consumer.retry",
                        consumer=consumer,
                        subject=msg.subject,
                        delivered=delivered,
                        error=_consumer_error(exc),
                    )
                    await msg.nak(delay=delay)

    async def _apply(self, sub: Subscription, consumer: str, event: Event, subject: str) -> None:
        tenant_scoped = sub.scope == "tenant"
        session_cm = (
            self.db.tenant_session(event.tenant_id) if tenant_scoped else self.db.platform_session()
        )
        async with session_cm as session:
            if tenant_scoped:
                status = (
                    await session.execute(
                        select(TenantRegistryRow.status).where(
                            TenantRegistryRow.tenant_id == event.tenant_id
                        )
                    )
                ).scalar_one_or_none()
                if status in ("deleted", "deprovisioned"):
                    log.info(
                        "consumer.skip_deleted_tenant",
                        consumer=consumer,
                        tenant=str(event.tenant_id),
                    )
                    return
                if status is None:
                    # The tenant's creation may not have reached this service yet: retry
                    # later (after max_deliver it is dead-lettered, never silently dropped).
                    raise TenantNotReady(f"tenant {event.tenant_id} is not known here yet")
            claimed = await session.execute(
                pg_insert(InboxRow)
                .values(
                    consumer=consumer,
                    event_id=event.id,
                    tenant_id=event.tenant_id,
                    event_type=event.type,
                )
                .on_conflict_do_nothing()
                .returning(InboxRow.event_id)
            )
            if claimed.first() is None:
                return  # already applied: a redelivery or a duplicate publish
            await sub.handler(EventContext(event, session, self.db, consumer, subject, self.js))

    async def _dead_letter(self, consumer: str, msg: Msg, exc: Exception, delivered: int) -> None:
        headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
        headers.update(
            {
                "Crm-Dlq-Consumer": consumer,
                "Crm-Dlq-Subject": msg.subject,
                # the dead letter already carries the payload; the reason in full helps the operator
                "Crm-Dlq-Error": repr(exc)[:500],
                "Crm-Dlq-Delivered": str(delivered),
                "Crm-Dlq-At": datetime.now(UTC).isoformat(),
            }
        )
        log.error(
            "consumer.dead_letter",
            consumer=consumer,
            subject=msg.subject,
            error=_consumer_error(exc),
        )
        await self.js.publish(
            dlq_subject(self.settings.service_name, consumer), msg.data, headers=headers, timeout=5
        )
