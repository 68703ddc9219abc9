"""Event path: outbox commit → consumer effect latency, and relay throughput vs raw NATS.

Latency: a running `OutboxRelay` + `EventWorker` (one tenant-scoped subscription whose
handler writes an effect row) while events are emitted one per transaction at a steady
rate. The effect's commit time (SQLAlchemy `after_commit` of the consumer transaction)
minus the envelope's `occurred_at` is the latency of one event.

Throughput: 20,000 outbox rows written by `emit` in a few big transactions while no relay
runs; then a fresh relay starts and is timed until every row has `published_at`. The
reference is nats-py JetStream `publish_async` (pipelined) of 20,000 messages of the same
payload size to a separate stream, measured in the same run before and after the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from typing import Any

from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text

from bench.common import Result, Stack, Stopwatch, Target, log, percentile, summary
from crm_contacts.app import SCHEMA as CONTACTS_SCHEMA
from crm_contacts.models import Company
from crm_lib.events import (
    EventContext,
    EventWorker,
    OutboxRelay,
    Subscription,
    connect_nats,
    emit,
    ensure_streams,
)
from crm_lib.migrations import provision_schema
from crm_lib.platform_tables import OutboxRow, TenantRegistryRow
from crm_lib.registry import load_service
from crm_lib.service import prepare_database
from crm_lib.settings import PlatformSettings
from crm_lib.tenancy import Database, tenant_schema

LATENCY_TYPE = "bench.probe.recorded"
DIAG_TYPE = "bench.probe.single"
BULK_TYPE = "bench.probe.bulk"
RATE_PER_S = 100.0
BULK_TX = 4
PAYLOAD_TARGET = 400  # bytes of encoded envelope, as in BENCHMARKS.md's NATS figures
RAW_STREAM = "BENCH_RAW"
RAW_SUBJECT = "benchraw.probe"
TARGET_P95_MS = 200.0
TARGET_RATIO = 0.5


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


def _pad_for(tenant_id: uuid.UUID) -> str:
    """Padding that makes the encoded envelope about PAYLOAD_TARGET bytes."""
    from crm_lib.events import _encoder, new_event

    probe = new_event(LATENCY_TYPE, tenant_id, {"n": 0, "pad": ""})
    return "x" * max(0, PAYLOAD_TARGET - len(_encoder.encode(probe)))


class Receipts:
    """What the consumer handler saw, keyed by event id."""

    def __init__(self) -> None:
        self.entered: dict[uuid.UUID, float] = {}
        self.committed: dict[uuid.UUID, float] = {}
        self.occurred: dict[uuid.UUID, float] = {}
        self._changed = asyncio.Event()

    async def wait_for(self, n: int) -> None:
        while len(self.committed) < n:
            self._changed.clear()
            await self._changed.wait()

    async def handler(self, ctx: EventContext) -> None:
        event_id = ctx.event.id
        self.entered[event_id] = time.time()
        self.occurred[event_id] = ctx.event.occurred_at.timestamp()
        ctx.session.add(Company(id=uuid.uuid4(), name=str(event_id)))  # the effect

        def _committed(_session: Any) -> None:
            self.committed[event_id] = time.time()
            self._changed.set()

        sa_event.listen(ctx.session.sync_session, "after_commit", _committed, once=True)


class Running:
    """A relay and/or a worker on their own NATS connection until stopped."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.nc: Any = None

    async def start(
        self,
        settings: PlatformSettings,
        db: Database,
        *,
        relay: bool,
        subscriptions: list[Subscription] | None = None,
    ) -> tuple[OutboxRelay | None, EventWorker | None]:
        self.nc = await connect_nats(settings)
        js = self.nc.jetstream()
        r = w = None
        if subscriptions:
            w = EventWorker(db, js, settings, subscriptions)
            await w.ensure_consumers()
            self.tasks.append(asyncio.create_task(w.run(self.stop)))
        if relay:
            r = OutboxRelay(db, js, settings)
            self.tasks.append(asyncio.create_task(r.run(self.stop)))
        return r, w

    async def close(self) -> None:
        self.stop.set()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 15)
        if self.nc is not None:
            await self.nc.close()


async def _latency(
    settings: PlatformSettings,
    db: Database,
    tenant_id: uuid.UUID,
    n: int,
    event_type: str,
    batch: int,
) -> dict[str, Any]:
    receipts = Receipts()
    sub = Subscription(
        f"bench-{event_type.split('.')[-1]}", [event_type], receipts.handler, batch=batch
    )
    running = Running()
    await running.start(settings, db, relay=True, subscriptions=[sub])
    pad = _pad_for(tenant_id)
    commit_done: dict[uuid.UUID, float] = {}
    sizes: list[int] = []
    try:
        await asyncio.sleep(1.0)  # let the pull consumer and LISTEN settle
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / RATE_PER_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with db.tenant_session(tenant_id) as session:
                ev = await emit(session, event_type, tenant_id, {"n": i, "pad": pad})
            commit_done[ev.id] = time.time()
        emit_seconds = time.perf_counter() - t0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receipts.wait_for(n), 60)
    finally:
        await running.close()
    async with db.engine.connect() as conn:
        sizes = list(
            (
                await conn.execute(
                    select(func.length(OutboxRow.payload)).where(OutboxRow.event_type == event_type)
                )
            ).scalars()
        )
    ids = [i for i in commit_done if i in receipts.committed]
    return {
        "n": n,
        "received": len(receipts.committed),
        "emit_seconds": emit_seconds,
        "effect": [receipts.committed[i] - receipts.occurred[i] for i in ids],
        "handler": [receipts.entered[i] - receipts.occurred[i] for i in ids],
        "from_commit": [receipts.committed[i] - commit_done[i] for i in ids],
        "payload_mean": statistics.fmean(sizes) if sizes else 0.0,
    }


async def _raw_publish(settings: PlatformSettings, n: int, size: int, msg_id: bool) -> float:
    """Messages/s of pipelined `publish_async` to RAW_STREAM (file storage)."""
    nc = await connect_nats(settings)
    try:
        js = nc.jetstream()
        with contextlib.suppress(Exception):
            await js.delete_stream(RAW_STREAM)
        await js.add_stream(
            StreamConfig(
                name=RAW_STREAM,
                subjects=[f"{RAW_SUBJECT.split('.')[0]}.>"],
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                duplicate_window=15 * 60,
            )
        )
        payload = b"x" * size
        watch = Stopwatch()
        futures = []
        for _ in range(n):
            headers = {"Nats-Msg-Id": str(uuid.uuid4())} if msg_id else None
            futures.append(await js.publish_async(RAW_SUBJECT, payload, headers=headers))
        await js.publish_async_completed()
        seconds = watch.seconds
        acks = await asyncio.gather(*futures)
        info = await js.stream_info(RAW_STREAM)
        assert len(acks) == n and info.state.messages == n, (len(acks), info.state.messages)
        await js.delete_stream(RAW_STREAM)
        return n / seconds
    finally:
        await nc.close()


async def _relay_throughput(
    settings: PlatformSettings, db: Database, tenant_id: uuid.UUID, n: int
) -> dict[str, Any]:
    pad = _pad_for(tenant_id)
    per_tx = n // BULK_TX
    watch = Stopwatch()
    for tx in range(BULK_TX):
        async with db.tenant_session(tenant_id) as session:
            for i in range(per_tx):
                await emit(session, BULK_TYPE, tenant_id, {"n": tx * per_tx + i, "pad": pad})
    emit_seconds = watch.seconds
    total = per_tx * BULK_TX
    async with db.engine.connect() as conn:
        pending = (
            await conn.execute(select(func.count()).where(OutboxRow.published_at.is_(None)))
        ).scalar_one()
        size = (
            await conn.execute(
                select(func.avg(func.length(OutboxRow.payload))).where(
                    OutboxRow.event_type == BULK_TYPE
                )
            )
        ).scalar_one()
    assert pending == total, f"expected {total} pending rows, found {pending}"

    running = Running()
    watch = Stopwatch()
    relay, _ = await running.start(settings, db, relay=True)
    assert relay is not None
    try:
        # The relay has no completion hook: sample its counter every 5 ms.
        deadline = time.monotonic() + 300
        while relay.published < total and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        relay_seconds = watch.seconds
    finally:
        await running.close()
    async with db.engine.connect() as conn:
        published = (
            await conn.execute(
                select(func.count())
                .where(OutboxRow.event_type == BULK_TYPE)
                .where(OutboxRow.published_at.is_not(None))
            )
        ).scalar_one()
        span = (
            await conn.execute(
                text(
                    "SELECT extract(epoch FROM max(published_at) - min(published_at)), "
                    "count(DISTINCT published_at) FROM platform.outbox WHERE event_type = :t"
                ),
                {"t": BULK_TYPE},
            )
        ).one()
    return {
        "n": total,
        "emit_seconds": emit_seconds,
        "relay_seconds": relay_seconds,
        "published": published,
        "payload": float(size),
        "batches": int(span[1]),
        "server_span": float(span[0] or 0.0),
    }


async def run(stack: Stack, quick: bool) -> Result:
    n_latency = 200 if quick else 1000
    n_bulk = 4000 if quick else 20000
    result = Result(
        "events", "event path: outbox commit → consumer effect, relay throughput", quick
    )
    watch = Stopwatch()
    settings = stack.settings("contacts", database_name=f"crm_bench_events_{uuid.uuid4().hex[:6]}")
    await prepare_database(load_service("contacts"), settings)
    nc = await connect_nats(settings)
    await ensure_streams(nc.jetstream())
    await nc.close()
    db = Database(settings)
    tenant_id = uuid.uuid4()
    try:
        await _register(db, tenant_id)
        log(f"events: latency, {n_latency} events at {RATE_PER_S:.0f}/s (default batch)")
        lat = await _latency(settings, db, tenant_id, n_latency, LATENCY_TYPE, batch=100)
        log(f"events: latency diagnostic, {n_latency} events with Subscription(batch=1)")
        diag = await _latency(settings, db, tenant_id, n_latency, DIAG_TYPE, batch=1)
        size = round(lat["payload_mean"]) or PAYLOAD_TARGET
        log(f"events: raw publish_async baseline, {n_bulk} x {size} B")
        raw_before = await _raw_publish(settings, n_bulk, size, msg_id=False)
        log(f"events: relay throughput, {n_bulk} rows")
        thr = await _relay_throughput(settings, db, tenant_id, n_bulk)
        raw_after = await _raw_publish(settings, n_bulk, size, msg_id=False)
        raw_msgid = await _raw_publish(settings, n_bulk, size, msg_id=True)
    finally:
        await db.dispose()

    p95 = percentile(lat["effect"], 95) * 1000
    p50 = percentile(lat["effect"], 50) * 1000
    relay_rate = thr["n"] / thr["relay_seconds"]
    raw = statistics.fmean([raw_before, raw_after])
    ratio = relay_rate / raw

    result.method = [
        "One scratch contacts database (platform tracks applied) with one registered tenant "
        "(contacts fast-path schema + registry row); the NATS server and `CRM_EVENTS` stream "
        "of the run; relay and worker each on their own NATS connection, in this process. "
        "Default settings (outbox batch 500, LISTEN/NOTIFY wake-up with 1 s poll fallback, "
        "consumer fetch timeout 1 s). Tracing off, logs at WARNING.",
        f"Latency: {n_latency} events emitted one per transaction (`emit` in a "
        f"`tenant_session`) at a steady {RATE_PER_S:.0f}/s, payload ≈ {PAYLOAD_TARGET} B, "
        "while an `OutboxRelay` and an `EventWorker` run. The worker has one tenant-scoped "
        "`Subscription` with the default `batch=100` (what every service subscription uses); "
        "its handler inserts a `companies` row (the effect) and registers an `after_commit` "
        "hook. Latency = effect commit time - envelope `occurred_at` (same clock, same "
        "process), so it includes the producer's own INSERT + commit.",
        "Diagnostic (same run, same rate): the same path with `Subscription(batch=1)`, to "
        "show how much of the latency is the consumer's fetch strategy.",
        f"Relay throughput: {n_bulk} rows emitted by `emit` in {BULK_TX} transactions while "
        "no relay runs; then a fresh `OutboxRelay` (own connection) starts and is timed until "
        "its published counter (incremented right after each batch's `published_at` UPDATE "
        "commits) reaches all rows; the row count with `published_at` set is checked after.",
        f"Reference: nats-py `js.publish_async` of {n_bulk} messages of the outbox rows' mean "
        f"payload size to a separate file-storage stream `{RAW_STREAM}`, then "
        "`publish_async_completed()`; measured before and after the relay, mean of both is "
        "the denominator. A third raw run with a unique `Nats-Msg-Id` per message (broker "
        "dedup, as the relay uses) is informational.",
    ]
    result.raw = [
        f"latency, batch=100 (default): received {lat['received']}/{lat['n']}; emitting took "
        f"{lat['emit_seconds']:.2f} s; mean payload {lat['payload_mean']:.0f} B",
        f"  occurred_at → effect committed: {summary(lat['effect'], 1000, ' ms')}",
        f"  occurred_at → handler entered:  {summary(lat['handler'], 1000, ' ms')}",
        f"  producer commit → effect committed: {summary(lat['from_commit'], 1000, ' ms')}",
        f"latency, batch=1 (diagnostic): received {diag['received']}/{diag['n']}; emitting "
        f"took {diag['emit_seconds']:.2f} s",
        f"  occurred_at → effect committed: {summary(diag['effect'], 1000, ' ms')}",
        f"  occurred_at → handler entered:  {summary(diag['handler'], 1000, ' ms')}",
        f"  producer commit → effect committed: {summary(diag['from_commit'], 1000, ' ms')}",
        f"relay: {thr['n']} rows (mean payload {thr['payload']:.0f} B) emitted in {BULK_TX} "
        f"transactions in {thr['emit_seconds']:.2f} s ({thr['n'] / thr['emit_seconds']:.0f} "
        "emits/s)",
        f"  relay drained them in {thr['relay_seconds']:.2f} s = {relay_rate:.0f} msg/s; rows "
        f"with published_at: {thr['published']}; distinct published_at values (= batches): "
        f"{thr['batches']}; first→last batch commit (server clock) {thr['server_span']:.2f} s",
        f"raw publish_async, before relay: {raw_before:.0f} msg/s",
        f"raw publish_async, after relay:  {raw_after:.0f} msg/s",
        f"raw publish_async with Nats-Msg-Id (informational): {raw_msgid:.0f} msg/s",
        f"ratio relay / raw (mean of before+after): {ratio:.2f}",
    ]
    result.targets = [
        Target(
            "p95 outbox commit → consumer effect",
            f"{p95:.0f} ms (p50 {p50:.0f} ms)",
            f"≤ {TARGET_P95_MS:.0f} ms",
            p95 <= TARGET_P95_MS,
        ),
        Target(
            "relay throughput / raw publish_async",
            f"{ratio:.2f} ({relay_rate:.0f} vs {raw:.0f} msg/s)",
            f"≥ {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        ),
        Target(
            "diagnostic: p95 with Subscription(batch=1)",
            f"{percentile(diag['effect'], 95) * 1000:.0f} ms",
            "(not a target)",
            None,
        ),
    ]
    result.seconds = watch.seconds
    return result
