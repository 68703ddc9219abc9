"""HTTP conventions shared by every service: problem+json errors, request ids,
tracing, health, metrics and the Litestar app factory."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.exc import DBAPIError

from crm_lib.telemetry import (
    describe_error,
    extract_context,
    get_logger,
    request_id_var,
    tracer,
)

log = get_logger("crm.http")

PROBLEM_JSON = "application/problem+json"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ProblemError(HTTPException):
    """Raise from any layer to answer with an RFC 9457 problem document."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        title: str | None = None,
        type_: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail=detail, status_code=status_code, headers=headers)
        self.title = title
        self.type_ = type_
        self.errors = errors
        # RFC 9457 extension members (e.g. ``duplicates`` naming existing records).
        self.extensions = extensions

    def problem(self) -> dict[str, Any]:
        """This error as a problem document (without request id or instance)."""
        return problem_body(
            self.status_code,
            self.detail,
            title=self.title,
            type_=self.type_,
            errors=self.errors,
            extensions=self.extensions,
        )


class FieldError(msgspec.Struct):
    """One entry of a validation problem's ``errors``."""

    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """The shape of every problem document (RFC 9457), for OpenAPI ``responses``.

    The answers themselves come from :class:`ProblemError`; services subclass this for
    extra members (e.g. ``duplicates``).
    """

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    #: Validation problems: what is wrong, field by field.
    errors: list[FieldError] | None = None
    request_id: str | None = None


def problem_spec(description: str, container: type[Problem] = Problem) -> ResponseSpec:
    """An OpenAPI response of ``application/problem+json`` with ``container``'s schema."""
    return ResponseSpec(
        data_container=container,
        description=description,
        media_type=PROBLEM_JSON,
        generate_examples=False,
    )


def problem_body(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_: str | None = None,
    errors: list[dict[str, str]] | None = None,
    instance: str | None = None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An RFC 9457 problem document (also used per item in batch results)."""
    from http import HTTPStatus

    try:
        default_title = HTTPStatus(status).phrase
    except ValueError:
        default_title = "Error"
    body: dict[str, Any] = {
        "type": type_ or f"https://errors.crm.example/{status}",
        "title": title or default_title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    for key, value in (extensions or {}).items():
        body.setdefault(key, value)
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    body = problem_body(
        status,
        detail,
        title=title,
        type_=type_,
        errors=errors,
        instance=instance,
        extensions=extensions,
    )
    rid = request_id_var.get()
    if rid:
        body["request_id"] = rid
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(extra: Any) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict):
                field = item.get("key") or item.get("source") or "body"
                errors.append({"field": str(field), "message": str(item.get("message", "invalid"))})
    return errors


def _handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = _validation_errors(exc.extra)
    return problem_response(
        422 if errors else 400,
        exc.detail or "Request validation failed",
        title="Validation failed" if errors else "Bad Request",
        type_="https://errors.crm.example/validation" if errors else None,
        errors=errors or None,
        instance=request.url.path,
    )


def _handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ProblemError):
        return problem_response(
            exc.status_code,
            exc.detail,
            title=exc.title,
            type_=exc.type_,
            errors=exc.errors,
            headers=exc.headers,
            instance=request.url.path,
            extensions=exc.extensions,
        )
    return problem_response(
        exc.status_code, exc.detail, headers=exc.headers, instance=request.url.path
    )


def _handle_internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # Never repr(exc)/str(exc): the message of a decode, validation or database error quotes
    # the request (a password) or bound parameters. Type and frames only (crm_lib.telemetry).
    log.error("http.unhandled", path=request.url.path, error=describe_error(exc), exc_info=exc)
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "An unexpected error occurred. Quote the request id when contacting support.",
        instance=request.url.path,
    )


def _handle_database(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Data the database refuses (class 22: bad encoding, NUL bytes, overflow) is a 422."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    if isinstance(sqlstate, str) and sqlstate.startswith("22"):
        return problem_response(
            422,
            "The request contains a value the platform cannot store.",
            title="Validation failed",
            type_="https://errors.crm.example/validation",
            errors=[],
            instance=request.url.path,
        )
    return _handle_internal(request, exc)


def _handle_undecodable(request: Request[Any, Any, Any], _exc: Exception) -> Response[Any]:
    """A body (or header/query value) that is not valid UTF-8: the client's error, a 400.

    The decoder's exception quotes the offending bytes (a login password): never echoed,
    never logged.
    """
    return problem_response(
        400,
        "The request body is not valid UTF-8 encoded JSON.",
        title="Bad Request",
        type_="https://errors.crm.example/malformed-body",
        instance=request.url.path,
    )


def _handle_too_deep(request: Request[Any, Any, Any], _exc: Exception) -> Response[Any]:
    return problem_response(
        400, "The request body is nested too deeply.", instance=request.url.path
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DBAPIError: _handle_database,
    RecursionError: _handle_too_deep,
    UnicodeDecodeError: _handle_undecodable,
    ValidationException: _handle_validation,
    NotFoundException: _handle_http,
    HTTPException: _handle_http,
    Exception: _handle_internal,
}


class RequestContextMiddleware:
    """Pure ASGI: request id, server span with incoming ``traceparent``, response headers."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self._tracer = tracer(f"{service}.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else str(uuid.uuid4())
        token = request_id_var.set(request_id)
        parent = extract_context(headers)
        method = str(scope.get("method", "GET"))
        path = str(scope.get("path", ""))
        span = self._tracer.start_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "crm.request_id": request_id,
            },
        )
        ctx_token = otel_context.attach(otel_trace.set_span_in_context(span, parent))
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                raw = list(message.get("headers", []))
                raw.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = raw
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            status = status_holder["status"]
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            otel_context.detach(ctx_token)
            request_id_var.reset(token)


ReadinessCheck = Callable[[], Awaitable[bool]]


def health_handlers(checks: dict[str, ReadinessCheck]) -> list[Any]:
    @get("/health/live", include_in_schema=False, sync_to_thread=False)
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @get("/health/ready", include_in_schema=False)
    async def ready() -> Response[dict[str, Any]]:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = bool(await check())
            except Exception:
                results[name] = False
        ok = all(results.values())
        return Response(
            {"status": "ok" if ok else "unavailable", "checks": results},
            status_code=200 if ok else 503,
        )

    return [live, ready]


def create_app(
    *,
    service: str,
    route_handlers: Sequence[Any],
    readiness: dict[str, ReadinessCheck],
    lifespan: Sequence[Any] = (),
    dependencies: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    version: str = "1.0.0",
    cors: bool = False,
    request_max_body_size: int = 10 * 1024 * 1024,
    metrics_endpoint: bool = True,
) -> Litestar:
    """The one way services build their Litestar app.

    ``metrics_endpoint=False`` records the Prometheus metrics without serving ``/metrics``
    on this app (the gateway, whose port is public, serves them on a separate port).
    """
    prometheus = PrometheusConfig(app_name=f"crm_{service}", prefix="crm", group_path=True)

    class Metrics(PrometheusController):
        path = "/metrics"
        include_in_schema = False

    extra_handlers: list[Any] = [Metrics] if metrics_endpoint else []

    from litestar.datastructures import State
    from litestar.middleware import DefineMiddleware

    return Litestar(
        route_handlers=[*route_handlers, *health_handlers(readiness), *extra_handlers],
        middleware=[
            DefineMiddleware(RequestContextMiddleware, service=service),
            prometheus.middleware,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title=f"CRM {service} API",
            version=version,
            path="/openapi",
        ),
        lifespan=list(lifespan),
        dependencies=dependencies or {},
        state=State(state or {}),
        cors_config=CORSConfig(allow_origins=["*"]) if cors else None,
        request_max_body_size=request_max_body_size,
        debug=False,
        logging_config=None,
    )


def if_match_version(header: str | None) -> int | None:
    """The version an ``If-Match`` header asks for (``"3"``, ``W/"3"`` or ``3``); 400 if garbled."""
    if header is None or header.strip() == "*":
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit() or len(value) > 18:
        raise ProblemError(
            400,
            'If-Match must carry the resource version, e.g. "3".',
            errors=[{"field": "If-Match", "message": "not a version"}],
        )
    return int(value)


def require_version(if_match: int | None, current: int, what: str) -> None:
    """412 when an ``If-Match`` version was given and the resource has moved on."""
    if if_match is not None and if_match != current:
        raise ProblemError(
            412,
            f"The {what} was changed meanwhile (now version {current}).",
            title="Precondition Failed",
        )
