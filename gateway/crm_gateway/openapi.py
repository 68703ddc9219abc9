"""The public OpenAPI document: every service's ``/api/v1`` paths merged into one.

Each upstream serves its own OpenAPI 3.1 document at ``/openapi/openapi.json``
(crm_lib's Litestar config). The merge keeps only paths under ``/api/v1/``, tags each
path item with ``x-service``, and merges ``components``: a component that two services
define differently is renamed ``<Service><Name>`` in *every* service that defines it
(so names do not depend on fetch order) and that service's ``$ref``s are rewritten.
Services that could not be fetched are listed in ``x-missing-services``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from crm_gateway.routing import API_PREFIX
from crm_gateway.settings import GatewaySettings
from crm_gateway.upstreams import UpstreamPool
from crm_lib.telemetry import describe_error, get_logger

log = get_logger("crm.gateway.openapi")

UPSTREAM_OPENAPI_PATH = "/openapi/openapi.json"
_REF_PREFIX = "#/components/"


def _rewrite_refs(node: Any, renames: Mapping[str, Mapping[str, str]]) -> Any:
    """Copy of ``node`` with ``$ref``s to renamed components pointing at the new names."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_REF_PREFIX):
                kind, _, name = value[len(_REF_PREFIX) :].partition("/")
                new = renames.get(kind, {}).get(name)
                out[key] = f"{_REF_PREFIX}{kind}/{new}" if new else value
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def _prefixed(service: str, name: str) -> str:
    return f"{service[:1].upper()}{service[1:]}{name}"


def merge_documents(
    docs: Mapping[str, dict[str, Any]],
    missing: list[str],
    *,
    title: str = "CRM API",
    version: str = "1.0.0",
) -> dict[str, Any]:
    """Merge per-service OpenAPI documents (service name -> document)."""
    # 1. find components defined differently by two services
    seen: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    for service, doc in docs.items():
        for kind, items in (doc.get("components") or {}).items():
            if isinstance(items, dict):
                for name, definition in items.items():
                    seen.setdefault((kind, name), []).append((service, definition))
    renames: dict[str, dict[str, dict[str, str]]] = {s: {} for s in docs}
    for (kind, name), defs in seen.items():
        first = defs[0][1]
        if any(d != first for _, d in defs[1:]):
            for service, _ in defs:
                renames[service].setdefault(kind, {})[name] = _prefixed(service, name)

    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Public API of the CRM platform, merged by the gateway.",
        },
        "paths": {},
        "components": {},
    }
    tags: dict[str, Any] = {}
    operation_ids: set[str] = set()
    for service, doc in docs.items():
        doc = _rewrite_refs(doc, renames[service]) if renames[service] else copy.deepcopy(doc)
        for kind, items in (doc.get("components") or {}).items():
            if not isinstance(items, dict):
                continue
            target = merged["components"].setdefault(kind, {})
            for name, definition in items.items():
                target.setdefault(renames[service].get(kind, {}).get(name, name), definition)
        for path, item in (doc.get("paths") or {}).items():
            if not path.startswith(API_PREFIX):
                continue
            if path in merged["paths"]:
                log.warning("gateway.openapi_duplicate_path", path=path, service=service)
                continue
            if isinstance(item, dict):
                item = {**item, "x-service": service}
                for operation in item.values():
                    if isinstance(operation, dict) and "operationId" in operation:
                        op_id = operation["operationId"]
                        if op_id in operation_ids:
                            operation["operationId"] = _prefixed(service, op_id)
                        operation_ids.add(operation["operationId"])
            merged["paths"][path] = item
        for tag in doc.get("tags") or []:
            if isinstance(tag, dict) and "name" in tag:
                tags.setdefault(tag["name"], tag)
    if tags:
        merged["tags"] = list(tags.values())
    if not merged["components"]:
        del merged["components"]
    if missing:
        merged["x-missing-services"] = sorted(missing)
    return merged


class OpenAPIAggregator:
    """Fetches, merges and briefly caches the public OpenAPI document."""

    def __init__(self, settings: GatewaySettings, pool: UpstreamPool) -> None:
        self.settings = settings
        self.pool = pool
        self._doc: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        session = self.pool.sessions.get(service)
        if session is None:
            return None
        timeout = aiohttp.ClientTimeout(total=self.settings.openapi_fetch_timeout_seconds)
        try:
            async with session.get(
                self.pool.urls[service] + UPSTREAM_OPENAPI_PATH,
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                if resp.status != 200:
                    log.warning(
                        "gateway.openapi_fetch_failed", upstream=service, status=resp.status
                    )
                    return None
                doc = await resp.json(content_type=None)
                return doc if isinstance(doc, dict) else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("gateway.openapi_fetch_failed", upstream=service, error=describe_error(exc))
            return None

    async def document(self) -> dict[str, Any]:
        if self._doc is not None and time.monotonic() < self._expires:
            return self._doc
        async with self._lock:  # one refresh at a time; waiters reuse its result
            if self._doc is not None and time.monotonic() < self._expires:
                return self._doc
            names = list(self.pool.urls)
            fetched = await asyncio.gather(*(self._fetch(n) for n in names))
            docs = {n: d for n, d in zip(names, fetched, strict=True) if d is not None}
            missing = [n for n, d in zip(names, fetched, strict=True) if d is None]
            self._doc = merge_documents(docs, missing)
            ttl = (
                self.settings.openapi_partial_cache_seconds
                if missing
                else self.settings.openapi_cache_seconds
            )
            self._expires = time.monotonic() + ttl
            return self._doc
