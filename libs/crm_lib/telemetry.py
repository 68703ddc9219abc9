"""OpenTelemetry tracing and structured JSON logging.

Tracing exports over OTLP/HTTP when ``CRM_OTLP_ENDPOINT`` is set and is a
no-op otherwise; tests install an in-memory exporter. Logs are JSON lines
that carry the current trace id, span id and request id.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

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


def setup_logging(settings: PlatformSettings) -> None:
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer()
    )
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=settings.service_name)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
