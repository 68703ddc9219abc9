"""Sending generated requests and judging the answers (shared by the suite's tests)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.security.spec import Request

PROBLEM = "application/problem+json"
#: Problem types of "who are you?" refusals (gateway and services' token checks).
AUTH_TYPES = (
    "https://errors.crm.example/unauthenticated",
    "https://errors.crm.example/invalid-token",
)


async def send(
    gw: httpx.AsyncClient, req: Request, headers: dict[str, str], **extra: Any
) -> httpx.Response:
    kw: dict[str, Any] = {"params": req.query or None, "headers": dict(headers)}
    if req.raw is not None:
        kw["content"] = req.raw
        kw["headers"]["Content-Type"] = req.content_type or "application/octet-stream"
    elif req.body is not None:
        if req.content_type == "application/x-www-form-urlencoded":
            kw["data"] = {k: str(v) for k, v in req.body.items()} if req.body else {}
            if not req.body:
                kw["content"] = b""
                kw.pop("data")
                kw["headers"]["Content-Type"] = req.content_type
        else:
            kw["content"] = json.dumps(req.body).encode()
            kw["headers"]["Content-Type"] = req.content_type or "application/json"
    url = extra.pop("url", req.path)
    kw.update(extra)
    return await gw.request(req.op.method, url, **kw)


def is_problem(r: httpx.Response) -> bool:
    return r.headers.get("content-type", "").startswith(PROBLEM)


def problem_type(r: httpx.Response) -> str:
    if not is_problem(r):
        return ""
    try:
        body = r.json()
    except ValueError:
        return ""
    return str(body.get("type", "")) if isinstance(body, dict) else ""


def is_auth_refusal(r: httpx.Response) -> bool:
    """A 401 saying the caller is not authenticated (not e.g. a wrong password)."""
    return r.status_code == 401 and problem_type(r) in AUTH_TYPES


def line(req: Request, who: str, r: httpx.Response) -> str:
    return f"{who}: {req.describe()} -> {r.status_code} {r.text[:200]}"


def item_refused(r: httpx.Response) -> bool:
    """A batch/bulk answer (200, one result per item) in which every item was refused."""
    try:
        body = r.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    if body.get("updated") == [] and body.get("skipped"):
        return True
    results = body.get("results")
    return bool(results) and all(
        isinstance(x, dict) and int(x.get("status", 200)) >= 400 for x in results
    )


def oauth_error(r: httpx.Response) -> bool:
    """An RFC 6749 error document (the token endpoint's own format)."""
    try:
        body = r.json()
    except ValueError:
        return False
    return 400 <= r.status_code < 500 and isinstance(body, dict) and "error" in body
