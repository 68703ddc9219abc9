"""OpenTelemetry tracing and structured JSON logging.

Tracing exports over OTLP/HTTP when ``CRM_OTLP_ENDPOINT`` is set and is a
no-op otherwise; tests install an in-memory exporter. Logs are JSON lines
that carry the current trace id, span id and request id.

Logs never carry request content: an exception is logged with its type and
traceback frames only (``format_exc_info`` below), never its message, because
the message of a decode, validation or database error quotes the input (a
password in a login body, the bound parameters of a statement). Log an error
with ``error=describe_error(exc)``, never ``repr(exc)`` or ``str(exc)``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from typing import IO, Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from crm_lib.settings import PlatformSettings

request_id_var: ContextVar[str | None] = ContextVar("crm_request_id", default=None)

_provider_installed = False


def setup_tracing(
    settings: PlatformSettings, *, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Install one tracer provider per process (first caller wins)."""
    global _provider_installed
    if _provider_installed:
        provider = trace.get_tracer_provider()
        return provider if isinstance(provider, TracerProvider) else None
    if exporter is None and not settings.otlp_endpoint:
        return None
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": f"crm-{settings.service_name}",
                "deployment.environment": settings.environment,
            }
        )
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")  # type: ignore[union-attr]
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    _provider_installed = True
    return provider


def tracing_enabled() -> bool:
    """Whether spans are recorded in this process (an SDK provider is installed)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(f"crm.{name}")


def inject_headers(carrier: dict[str, str] | None = None) -> dict[str, str]:
    """W3C trace context of the current span as a header dict."""
    carrier = carrier if carrier is not None else {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: dict[str, str] | None) -> Any:
    return propagate.extract(headers or {})


def _add_trace_ids(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    request_id = request_id_var.get()
    if request_id:
        event_dict["request_id"] = request_id
    return event_dict


# ------------------------------------------------------------------ exceptions without content

#: Exceptions whose message never quotes request or stored data (errno texts, timeouts,
#: connection failures): their message is kept in logs, every other message is dropped.
_SAFE_MESSAGE_TYPES: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, TimeoutError, socket errors: errno + strerror
    asyncio.TimeoutError,
    asyncio.CancelledError,
)
_SAFE_MESSAGE_MODULES = ("httpx", "httpcore", "aiohttp", "redis", "nats")


def _message_is_safe(exc: BaseException) -> bool:
    if isinstance(exc, _SAFE_MESSAGE_TYPES) and not isinstance(exc, UnicodeError):
        return True
    module = type(exc).__module__.split(".")[0]
    # Transport errors of the network clients say what failed to connect, not what was sent;
    # their decode/protocol errors may quote bytes, so only their connection/timeout classes.
    name = type(exc).__name__
    return module in _SAFE_MESSAGE_MODULES and any(
        word in name for word in ("Connect", "Timeout", "Unavailable", "NoServers", "Closed")
    )


def describe_error(exc: BaseException) -> str:
    """A loggable description of ``exc`` that never contains request or stored data.

    The type name, plus the message for connection/timeout errors, plus the SQLSTATE of a
    database error. A ``UnicodeDecodeError``'s repr holds the offending bytes (a password),
    a SQLAlchemy error's text its bound parameters, a validation error the value it refused.
    """
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if name.startswith("builtins."):
        name = type(exc).__qualname__
    orig = getattr(exc, "orig", None)
    sqlstate = (
        getattr(orig, "sqlstate", None)
        or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
        or getattr(exc, "sqlstate", None)
    )
    if isinstance(sqlstate, str):
        return f"{name} (sqlstate {sqlstate})"
    if _message_is_safe(exc):
        message = str(exc)
        return f"{name}: {message}"[:500] if message else name
    return name


def format_exception_safely(exc: BaseException) -> str:
    """A traceback of ``exc`` and its causes: frames and types, no messages (see above)."""
    seen: set[int] = set()
    chain: list[tuple[BaseException, str | None]] = []
    current: BaseException | None = exc
    link: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "context"
        else:
            current = None
    lines: list[str] = []
    for item, how in reversed(chain):
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(item.__traceback__))
        lines.append(describe_error(item) + "\n")
        if how == "cause":
            lines.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
            )
        elif how == "context":
            lines.append(
                "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
    return "".join(lines).rstrip("\n")


def _exc_info_tuple(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        return exc_info[1] if len(exc_info) > 1 else None
    if exc_info:
        return sys.exc_info()[1]
    return None


def format_exc_info(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: ``exc_info`` rendered by ``format_exception_safely``."""
    exc_info = event_dict.pop("exc_info", None)
    exc = _exc_info_tuple(exc_info)
    if exc is not None:
        event_dict["exception"] = format_exception_safely(exc)
    return event_dict


# ------------------------------------------------------------------ output and extra sinks

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "err": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

#: Extra destinations of every rendered log line: (minimum level, text stream). The test
#: plugin ``crm_dev.testing_logs`` adds one to keep all of a session's logs in a file.
_sinks: list[tuple[int, IO[str]]] = []
_output_level = logging.INFO


class _LineLogger:
    """structlog output: stderr at the configured level, plus every registered sink."""

    def _emit(self, level: int, message: str) -> None:
        if level >= _output_level:
            print(message, file=sys.stderr, flush=True)
        for min_level, stream in list(_sinks):
            if level >= min_level:
                try:
                    stream.write(message + "\n")
                    stream.flush()
                except ValueError:  # closed stream
                    pass

    def __getattr__(self, name: str) -> Callable[[str], None]:
        level = _LEVELS.get(name)
        if level is None:
            raise AttributeError(name)
        return lambda message: self._emit(level, message)


def add_log_sink(stream: IO[str], level: int = logging.DEBUG) -> Callable[[], None]:
    """Also write every log line at ``level`` and above to ``stream``; returns the remover.

    Register it before ``setup_logging`` runs (loggers are cached on first use with the
    level filter in force then).
    """
    entry = (level, stream)
    _sinks.append(entry)

    def remove() -> None:
        if entry in _sinks:
            _sinks.remove(entry)

    return remove


def log_processors() -> list[Any]:
    """The processors of the services' JSON log lines (also used by the test plugin)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
        format_exc_info,
    ]


def setup_logging(settings: PlatformSettings) -> None:
    global _output_level
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer()
    )
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    _output_level = level
    # Sinks may want more than the console: filter at the lowest level anyone wants.
    filter_level = min([level, *(sink_level for sink_level, _ in _sinks)])
    structlog.configure(
        processors=[*log_processors(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(filter_level),
        logger_factory=lambda *_args: _LineLogger(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=settings.service_name)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
