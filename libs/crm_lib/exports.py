"""Tenant data export: every service dumps its tenant schema into the JetStream object store.

Identity publishes ``identity.tenant.export_requested`` (data: ``job_id``); each
service streams every table of its tenant metadata as JSON lines (gzip) into the
``crm-exports`` bucket under ``<tenant id>/<job id>/<service>.jsonl.gz`` and
answers ``<service>.tenant.export_ready``. Object names always start with the
tenant id (derived here, nowhere else), so one tenant's job can never address
another tenant's objects.
"""

from __future__ import annotations

import gzip
import tempfile
import uuid
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.object_store import ObjectStore
from sqlalchemy import MetaData, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_lib.events import EventContext, Subscription
from crm_lib.tenancy import parse_tenant_id

EXPORT_BUCKET = "crm-exports"
EXPORT_REQUESTED = "identity.tenant.export_requested"
EXPORT_TTL_SECONDS = 7 * 24 * 3600

_encoder = msgspec.json.Encoder()


def export_object_name(tenant_id: uuid.UUID | str, job_id: uuid.UUID | str, part: str) -> str:
    if not part.replace("_", "").replace(".", "").replace("-", "").isalnum():
        raise ValueError(f"bad export part name {part!r}")
    return f"{parse_tenant_id(tenant_id)}/{uuid.UUID(str(job_id))}/{part}"


async def export_store(js: JetStreamContext) -> ObjectStore:
    try:
        return await js.object_store(EXPORT_BUCKET)
    except BucketNotFoundError:
        return await js.create_object_store(
            EXPORT_BUCKET,
            config=ObjectStoreConfig(
                bucket=EXPORT_BUCKET,
                storage=StorageType.FILE,
                ttl=EXPORT_TTL_SECONDS,
                description="Tenant data exports (one folder per tenant)",
            ),
        )


async def dump_tenant(
    session: AsyncSession, metadata: MetaData, exclude: frozenset[str] = frozenset()
) -> tuple[Any, dict[str, int]]:
    """Every row of every table of ``metadata`` (tenant-bound session), as gzip JSON lines.

    ``exclude`` names tables (``"refresh_tokens"``) or columns (``"users.password_hash"``)
    that never leave the service (secrets, credentials).

    Returns an open temporary file positioned at 0 and the row count per table.
    """
    spool = tempfile.TemporaryFile()
    counts: dict[str, int] = {}
    with gzip.GzipFile(fileobj=spool, mode="wb") as out:
        for table in metadata.sorted_tables:
            if table.name in exclude:
                continue
            counts[table.name] = 0
            columns = [c for c in table.columns if f"{table.name}.{c.name}" not in exclude]
            result = await session.stream(select(*columns))
            async for partition in result.partitions(1000):
                for row in partition:
                    line = {
                        "table": str(table.name),
                        "row": {str(k): v for k, v in row._mapping.items()},
                    }
                    out.write(_encoder.encode(line) + b"\n")
                    counts[table.name] += 1
    spool.seek(0)
    return spool, counts


def export_subscription(
    service: str, metadata: MetaData, exclude: frozenset[str] = frozenset()
) -> Subscription:
    async def handle(ctx: EventContext) -> None:
        assert ctx.js is not None
        job_id = uuid.UUID(str(ctx.event.data["job_id"]))
        name = export_object_name(ctx.event.tenant_id, job_id, f"{service}.jsonl.gz")
        spool, counts = await dump_tenant(ctx.session, metadata, exclude)
        try:
            store = await export_store(ctx.js)
            info = await store.put(name, spool)
        finally:
            spool.close()
        await ctx.emit(
            f"{service}.tenant.export_ready",
            {
                "job_id": str(job_id),
                "service": service,
                "object": name,
                "bytes": info.size,
                "tables": counts,
            },
        )

    return Subscription(
        name="tenant-export", event_types=[EXPORT_REQUESTED], handler=handle, scope="tenant"
    )
