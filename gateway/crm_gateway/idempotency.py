"""``Idempotency-Key`` for POST, PATCH and DELETE of authenticated requests.

The key is scoped to the tenant and the principal:
``tenant_key(tenant, "idem", principal_subject, key)``. The first request with a key
claims it atomically (one Lua call) with an *in-flight* record carrying the request's
fingerprint (sha256 of method, path + query and sha256 of the body). Then:

* the response (status, selected headers, body) replaces the record for
  ``idempotency_ttl_seconds`` (24 h) if its status is 2xx or a non-transient 4xx; a 5xx,
  a transient 4xx (408, 425, 429) or an incomplete response releases the key so the
  client can retry;
* the same key and fingerprint again returns the stored response with
  ``Idempotent-Replayed: true``; a different fingerprint is 409; while the first request
  is still running, a duplicate is 409 "request in progress" (``Retry-After: 1``).

The request body is buffered (bounded by ``max_body_bytes``, 413 above) to fingerprint
it. Keys longer than 255 characters or with non-printable characters are 400. Responses
larger than ``idempotency_max_response_bytes`` are not stored; replays of such a key
answer 409 instead of running the request twice. A response marked
``Cache-Control: no-store`` (identity marks every answer carrying a secret shown once:
new API keys, OAuth client secrets, tokens) is never stored either: only the fact that
the key was used is kept, and a replay answers 409 the same way (the request is not run
twice, and the secret is not in Redis for 24 h). If Redis is down the request passes
without idempotency (documented fail-open); the record of a key is only ever replaced
by the request that claimed it.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from crm_gateway.metrics import IDEMPOTENCY
from crm_gateway.proxy import send_problem
from crm_gateway.redis_link import REDIS_ERRORS, RedisLink
from crm_gateway.settings import GatewaySettings
from crm_lib.auth import PRINCIPAL_SCOPE_KEY, Principal
from crm_lib.telemetry import describe_error, get_logger
from crm_lib.tenancy import tenant_key

log = get_logger("crm.gateway.idempotency")

METHODS = frozenset({"POST", "PATCH", "DELETE"})
MAX_KEY_LENGTH = 255
REPLAYED_HEADER = (b"idempotent-replayed", b"true")
#: response headers kept with a stored response (the rest is per-delivery)
STORED_HEADERS = frozenset(
    {
        b"content-type",
        b"content-encoding",
        b"content-language",
        b"content-location",
        b"location",
        b"etag",
        b"last-modified",
        b"link",
        b"cache-control",
        b"vary",
        b"preference-applied",
    }
)
_TRANSIENT = frozenset({408, 425, 429})
PROBLEM_TYPE = "https://errors.crm.example/idempotency"

# Claim KEYS[1] with ARGV[1] for ARGV[2] ms unless it exists; return the existing value.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# Replace (ARGV[2] set, for ARGV[3] ms) or delete (ARGV[2] empty) KEYS[1] if it still
# holds our claim ARGV[1].
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""


class Record(msgspec.Struct, array_like=True):
    """What is stored under an idempotency key."""

    fingerprint: str
    state: str  # "pending" | "done" | "too_large" | "no_store"
    owner: str = ""
    status: int = 0
    headers: list[tuple[bytes, bytes]] = []
    body: bytes = b""


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode


def _has_no_store(value: bytes) -> bool:
    """Whether a ``Cache-Control`` value holds the ``no-store`` directive."""
    return any(
        part.strip().split(b"=", 1)[0].strip().lower() == b"no-store" for part in value.split(b",")
    )


def _valid_key(key: bytes) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(0x20 <= c <= 0x7E for c in key)


class _Capture:
    """Wraps ``send``: relays the response and keeps a bounded copy of it."""

    __slots__ = (
        "body",
        "complete",
        "headers",
        "limit",
        "no_store",
        "overflow",
        "send",
        "size",
        "status",
    )

    def __init__(self, send: Send, limit: int) -> None:
        self.send = send
        self.limit = limit
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.overflow = False
        self.complete = False
        self.no_store = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [
                (n.lower(), v) for n, v in message.get("headers", ()) if n.lower() in STORED_HEADERS
            ]
            self.no_store = any(n == b"cache-control" and _has_no_store(v) for n, v in self.headers)
            if self.no_store:  # never keep a copy of a secret shown once
                self.overflow = True
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            if chunk and not self.overflow:
                self.size += len(chunk)
                if self.size > self.limit:
                    self.overflow = True
                    self.body = []
                else:
                    self.body.append(chunk)
            if not message.get("more_body", False):
                self.complete = True
        await self.send(message)


class IdempotencyLayer:
    """Pure ASGI layer; must run inside ``AccessLayer`` (it needs the principal)."""

    def __init__(self, app: ASGIApp, settings: GatewaySettings, redis: RedisLink) -> None:
        self.app = app
        self.redis = redis
        self.settings = settings
        self.ttl_ms = settings.idempotency_ttl_seconds * 1000
        self.lock_ms = settings.idempotency_lock_seconds * 1000
        self.max_response = settings.idempotency_max_response_bytes
        self._claim = redis.client.register_script(_CLAIM)
        self._finish = redis.client.register_script(_FINISH)

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        key: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                key = value
                break
        principal: Any = scope.get(PRINCIPAL_SCOPE_KEY)
        if key is None or not isinstance(principal, Principal):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not _valid_key(key):
            await send_problem(
                send,
                400,
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
                title="Invalid Idempotency-Key",
                type_=PROBLEM_TYPE,
                instance=path,
            )
            return
        if not self.redis.available:
            IDEMPOTENCY.labels("bypassed").inc()
            await self.app(scope, receive, send)
            return

        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        replay_receive = _replay(body, receive)
        digest = hashlib.sha256()
        digest.update(scope["method"].encode() + b"\n")
        digest.update(scope.get("raw_path") or path.encode())
        digest.update(b"?" + scope.get("query_string", b"") + b"\n")
        digest.update(hashlib.sha256(body).digest())
        fingerprint = digest.hexdigest()
        redis_key = tenant_key(principal.tenant_id, "idem", principal.subject, key.decode("ascii"))
        claim = _encode(Record(fingerprint, "pending", owner=secrets.token_hex(8)))
        try:
            async with self.redis.deadline():
                existing = await self._claim(keys=[redis_key], args=[claim, self.lock_ms])
        except REDIS_ERRORS as exc:
            self.redis.failed(exc)
            IDEMPOTENCY.labels("bypassed").inc()
            await self.app(scope, replay_receive, send)
            return
        if existing:
            await self._answer_existing(send, path, existing, fingerprint)
            return

        capture = _Capture(send, self.max_response)
        try:
            await self.app(scope, replay_receive, capture)
        finally:
            await self._finish_claim(redis_key, claim, capture)

    async def _answer_existing(
        self, send: Send, path: str, existing: bytes, fingerprint: str
    ) -> None:
        try:
            record = _decode(existing)
        except (msgspec.DecodeError, msgspec.ValidationError):
            record = Record("", "corrupt")
        if record.fingerprint != fingerprint:
            IDEMPOTENCY.labels("mismatch").inc()
            await send_problem(
                send,
                409,
                "This Idempotency-Key was already used with a different request.",
                title="Idempotency-Key reused",
                type_=PROBLEM_TYPE,
                instance=path,
            )
        elif record.state == "pending":
            IDEMPOTENCY.labels("in_progress").inc()
            await send_problem(
                send,
                409,
                "A request with this Idempotency-Key is still in progress.",
                title="Request in progress",
                type_=PROBLEM_TYPE,
                instance=path,
                extra_headers=[(b"retry-after", b"1")],
            )
        elif record.state == "done":
            IDEMPOTENCY.labels("replayed").inc()
            headers = [
                *record.headers,
                (b"content-length", str(len(record.body)).encode()),
                REPLAYED_HEADER,
            ]
            await send({"type": "http.response.start", "status": record.status, "headers": headers})
            await send({"type": "http.response.body", "body": record.body, "more_body": False})
        else:
            IDEMPOTENCY.labels("not_stored").inc()
            why = (
                "carried a secret shown only once (Cache-Control: no-store)"
                if record.state == "no_store"
                else "is too large to be replayed"
            )
            await send_problem(
                send,
                409,
                f"The request with this Idempotency-Key was processed, but its response {why}.",
                title="Response not replayable",
                type_=PROBLEM_TYPE,
                instance=path,
            )

    async def _finish_claim(self, redis_key: str, claim: bytes, capture: _Capture) -> None:
        status = capture.status
        value = b""
        if capture.complete and (
            200 <= status < 300 or (400 <= status < 500 and status not in _TRANSIENT)
        ):
            fingerprint = _decode(claim).fingerprint
            if capture.overflow:
                state = "no_store" if capture.no_store else "too_large"
                value = _encode(Record(fingerprint, state, status=status))
                IDEMPOTENCY.labels("not_stored").inc()
            else:
                value = _encode(
                    Record(
                        fingerprint,
                        "done",
                        status=status,
                        headers=capture.headers,
                        body=b"".join(capture.body),
                    )
                )
                IDEMPOTENCY.labels("stored").inc()
        try:
            async with self.redis.deadline():
                await self._finish(keys=[redis_key], args=[claim, value, self.ttl_ms])
        except REDIS_ERRORS as exc:
            self.redis.failed(exc)
            log.warning("gateway.idempotency_not_recorded", error=describe_error(exc))

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole request body, or None after answering 413 / on disconnect."""
        chunks: list[bytes] = []
        size = 0
        limit = self.settings.body_limit(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._too_large(send, scope["path"], limit)
                return None
        while True:
            message: Any = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    await self._too_large(send, scope["path"], limit)
                    return None
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, send: Send, path: str, limit: int) -> None:
        await send_problem(
            send,
            413,
            f"Request body exceeds {limit} bytes",
            instance=path,
            extra_headers=[(b"connection", b"close")],
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out the buffered body once, then the real channel."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
