"""GDPR requests across services: gather what the platform holds about one person, or forget it.

Contacts owns the requests; every service in ``PRIVACY_SERVICES`` answers them through
``privacy_subscription`` (durable consumer ``<service>-gdpr``) with a *collector* and
an *eraser* of its own:

* ``contacts.gdpr.export_requested`` (``request_id``, ``contact_id``, ``contact_ids``,
  ``email_sha256``): the collector returns everything the service holds about the
  person (JSON-able); it is stored in the ``crm-exports`` object store under
  ``<tenant id>/<request id>/gdpr-<service>.json`` (the tenant prefix derived by
  ``crm_lib.exports``) and the service answers ``<service>.gdpr.export_ready``
  (``request_id``, ``service``, ``object``, ``bytes``, ``records``).
* ``contacts.contact.erased`` (``contact_id``, ``erasure_id``, ``contact_ids``,
  ``email_sha256``): the eraser anonymises what the service holds, in the consumer's
  transaction, and the service answers ``<service>.gdpr.erased`` (``erasure_id``,
  ``contact_id``, ``service``, ``records``).

``contact_ids`` is the contact plus the duplicates once merged into it (the same
person).
Personal data never travels in events: requests name the contact by id and by
SHA-256 fingerprints of its (lower-cased) email addresses; parts go to the object
store, never onto the event stream. Handlers run in a session bound to the
event's tenant, so one tenant's request can only read and erase that tenant's rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession

from crm_lib.events import EventContext, Subscription
from crm_lib.exports import export_object_name, export_store

#: Services that hold data about customers and must answer every GDPR request.
PRIVACY_SERVICES: tuple[str, ...] = ("contacts", "sales", "marketing", "support")

EXPORT_REQUESTED = "contacts.gdpr.export_requested"
ERASED = "contacts.contact.erased"
EXPORT_READY = "gdpr.export_ready"  # "<service>." + this
ERASURE_DONE = "gdpr.erased"  # "<service>." + this

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Person:
    """Who a GDPR request is about, as the services may match it."""

    tenant_id: uuid.UUID
    contact_id: uuid.UUID
    #: The contact and the duplicates once merged into it (all the same person).
    contact_ids: tuple[uuid.UUID, ...]
    #: SHA-256 (hex) of each lower-cased email address the contact had.
    email_sha256: tuple[str, ...]
    #: The export or erasure request id.
    request_id: uuid.UUID


Collector = Callable[[AsyncSession, Person], Awaitable[dict[str, Any]]]
#: Returns how many rows of what kind it anonymised (the receipt's ``records``).
Eraser = Callable[[AsyncSession, Person], Awaitable[dict[str, int]]]


def email_fingerprint(address: str) -> str:
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def email_fingerprints(addresses: Iterable[str]) -> list[str]:
    return sorted({email_fingerprint(a) for a in addresses if a})


def gdpr_object_name(tenant_id: uuid.UUID | str, request_id: uuid.UUID | str, service: str) -> str:
    return export_object_name(tenant_id, request_id, f"gdpr-{service}.json")


def encode_part(part: dict[str, Any]) -> bytes:
    """A collector's answer as JSON (UUIDs, datetimes, decimals as strings)."""
    return _encoder.encode(part)


def count_records(part: dict[str, Any]) -> dict[str, int]:
    return {k: len(v) if isinstance(v, list) else int(v is not None) for k, v in part.items()}


def _person(ctx: EventContext, id_key: str) -> Person:
    data = ctx.event.data
    contact_id = uuid.UUID(str(data["contact_id"]))
    others = [uuid.UUID(str(i)) for i in data.get("contact_ids") or ()]
    return Person(
        tenant_id=ctx.event.tenant_id,
        contact_id=contact_id,
        contact_ids=tuple(dict.fromkeys([contact_id, *others])),
        email_sha256=tuple(str(h) for h in data.get("email_sha256") or ()),
        request_id=uuid.UUID(str(data[id_key])),
    )


def privacy_subscription(
    service: str, *, collector: Collector | None = None, eraser: Eraser | None = None
) -> Subscription:
    """The consumer through which ``service`` answers GDPR requests.

    A service that erases synchronously (contacts itself) passes no eraser.
    """
    if service not in PRIVACY_SERVICES:
        raise ValueError(f"{service!r} is not a privacy service")

    async def handle(ctx: EventContext) -> None:
        if ctx.event.type == EXPORT_REQUESTED and collector is not None:
            person = _person(ctx, "request_id")
            part = await collector(ctx.session, person)
            body = encode_part({"service": service, **part})
            name = gdpr_object_name(ctx.event.tenant_id, person.request_id, service)
            assert ctx.js is not None
            store = await export_store(ctx.js)
            info = await store.put(name, body)
            await ctx.emit(
                f"{service}.{EXPORT_READY}",
                {
                    "request_id": str(person.request_id),
                    "contact_id": str(person.contact_id),
                    "service": service,
                    "object": name,
                    "bytes": info.size,
                    "records": count_records(part),
                },
            )
        elif ctx.event.type == ERASED and eraser is not None:
            person = _person(ctx, "erasure_id")
            records = await eraser(ctx.session, person)
            await ctx.emit(
                f"{service}.{ERASURE_DONE}",
                {
                    "erasure_id": str(person.request_id),
                    "contact_id": str(person.contact_id),
                    "service": service,
                    "records": records,
                },
            )

    types = [t for t, fn in ((EXPORT_REQUESTED, collector), (ERASED, eraser)) if fn is not None]
    return Subscription(name="gdpr", event_types=types, handler=handle)


def receipt_subscription(handler: Callable[[EventContext], Awaitable[None]]) -> Subscription:
    """The requesting side (contacts): every service's export parts and erasure receipts."""
    return Subscription(
        name="gdpr-receipts",
        event_types=[f"*.{EXPORT_READY}", f"*.{ERASURE_DONE}"],
        handler=handler,
    )


async def read_part(
    js: JetStreamContext, tenant_id: uuid.UUID | str, request_id: uuid.UUID | str, service: str
) -> Any:
    """One service's stored part of a GDPR export (decoded JSON)."""
    store = await export_store(js)
    result = await store.get(gdpr_object_name(tenant_id, request_id, service))
    return msgspec.json.decode(result.data or b"null")


async def delete_parts(
    js: JetStreamContext, tenant_id: uuid.UUID | str, request_id: uuid.UUID | str
) -> int:
    """Remove every stored part of an export (e.g. once the person is erased)."""
    store = await export_store(js)
    removed = 0
    for service in PRIVACY_SERVICES:
        # Not there (never answered, expired, already removed): nothing to do.
        with contextlib.suppress(Exception):
            await store.delete(gdpr_object_name(tenant_id, request_id, service))
            removed += 1
    return removed
