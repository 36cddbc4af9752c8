"""OpenTelemetry export of served requests: one span per request, a child span per model call.

Off unless the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
variables are set or ``FLOWFRONT_OTEL=true`` (then the SDK reads the other ``OTEL_*`` variables
itself: headers, protocol, service name). Needs the ``otel`` extra. Spans are built after the
request from what it logged (each call's start time and duration), so nothing on the request
path waits on telemetry. Call spans follow the OpenTelemetry GenAI semantic conventions
(``chat {model}``, ``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.usage.*``); the
request span carries the workflow, the candidate and the router generation.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flowfront.store import Decision

__all__ = ["Telemetry", "telemetry_from_environment"]

log = logging.getLogger("flowfront.service")
_SECONDS = 1_000_000_000


class Telemetry:
    """Turns a served request (its decision and call log) into spans on ``provider``."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("flowfront.service")

    def request(self, decision: Decision, events: list[Any], ended_at: float) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        start = int(decision.created_at * _SECONDS)
        parent = self.tracer.start_span(
            f"workflow {decision.workflow}",
            kind=SpanKind.SERVER,
            start_time=start,
            attributes=_clean(
                {
                    "flowfront.workflow": decision.workflow,
                    "flowfront.response_id": decision.id,
                    "flowfront.endpoint": decision.endpoint,
                    "flowfront.strategy": decision.strategy,
                    "flowfront.candidate": decision.candidate,
                    "flowfront.router_generation": decision.generation,
                    "flowfront.frontier_hash": decision.frontier_hash,
                    "flowfront.propensity": decision.propensity,
                    "flowfront.fallbacks": len(decision.fallbacks),
                    "http.response.status_code": decision.status,
                    "flowfront.cost_usd": decision.cost_usd,
                }
            ),
        )
        context = trace.set_span_in_context(parent)
        for event in events:
            self._call(event, context)
        if decision.status >= 400:
            parent.set_status(Status(StatusCode.ERROR, (decision.error or "")[:200]))
        parent.end(end_time=max(start, int(ended_at * _SECONDS)))

    def _call(self, event: Any, context: Any) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        req, done = event.request, event.completion
        start = int(event.started_at * _SECONDS)
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": req.model,
                      "gen_ai.request.max_tokens": req.budget, "flowfront.candidate": event.candidate,
                      "flowfront.node": req.node}
        if done is not None:
            attributes |= {
                "gen_ai.response.model": req.model,
                "gen_ai.usage.input_tokens": done.prompt_tokens,
                "gen_ai.usage.output_tokens": done.completion_tokens,
                "gen_ai.response.finish_reasons": ["length" if done.truncated else "stop"],
                "flowfront.latency_s": done.latency_s,
                "flowfront.latency_source": done.latency_source,
                "flowfront.cost_usd": done.cost_usd,
            }
        span = self.tracer.start_span(
            f"chat {req.model}",
            context=context,
            kind=SpanKind.CLIENT,
            start_time=start,
            attributes=_clean(attributes),
        )
        if done is None:
            kind = "cancelled" if event.cancelled else type(event.error).__name__
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, str(event.error or kind)[:200]))
        span.end(end_time=start + int(event.wall_s * _SECONDS))

    def shutdown(self) -> None:
        self.provider.shutdown()


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


def telemetry_from_environment(enabled: bool) -> Telemetry | None:
    """An OTLP exporter when the standard variables (or ``enabled``) ask for one; else None."""
    wanted = enabled or any(os.environ.get(v) for v in ("OTEL_EXPORTER_OTLP_ENDPOINT",
                                                         "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    if not wanted or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    from flowfront.errors import SpecError

    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise SpecError(
            "OpenTelemetry export is on, but its packages are missing",
            hint="pip install 'flowfront[otel]', or unset OTEL_EXPORTER_OTLP_* / FLOWFRONT_OTEL",
        ) from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "flowfront")})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    log.info("OpenTelemetry export on (OTLP over HTTP)")
    return Telemetry(provider)
