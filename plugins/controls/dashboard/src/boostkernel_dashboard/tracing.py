"""The tracing control (``tracing=True``): OpenTelemetry spans for publish and run, linked across processes.

``on_publish`` starts a ``publish <queue>`` span (kind PRODUCER) and writes its W3C trace context into the
message headers (``headers["trace"] = {"traceparent": …}``). The worker's ``around`` extracts it and runs
the task inside a ``run <queue>`` span (kind CONSUMER) that is a child of the publish span and also links
to it, so one trace spans producer and consumer processes. The application configures the OpenTelemetry
SDK and its exporter; without one, the API's no-op tracer makes the spans free.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from boostkernel.control import Control, TaskContext
from boostkernel.message import Envelope

HEADER = "trace"


class TracingControl(Control):
    """OpenTelemetry publish and run spans, linked through the message headers."""

    name = "tracing"

    def __init__(self, booster: Any) -> None:
        super().__init__(booster)
        from opentelemetry import propagate, trace

        self._trace = trace
        self._propagate = propagate
        self.tracer = trace.get_tracer("boostkernel")

    def on_publish(self, envelope: Envelope) -> None:
        trace = self._trace
        attrs = {"messaging.system": "boostkernel", "messaging.destination.name": envelope.queue,
                 "messaging.message.id": envelope.id}
        with self.tracer.start_as_current_span(f"publish {envelope.queue}", kind=trace.SpanKind.PRODUCER,
                                               attributes=attrs):
            carrier: dict[str, str] = {}
            self._propagate.inject(carrier)
        if carrier:
            envelope.headers = {**envelope.headers, HEADER: carrier}

    def _span(self, ctx: TaskContext) -> Any:
        trace = self._trace
        carrier = ctx.envelope.headers.get(HEADER) if isinstance(ctx.envelope.headers, dict) else None
        parent = self._propagate.extract(carrier) if isinstance(carrier, dict) else None
        links = []
        if parent is not None:
            sc = trace.get_current_span(parent).get_span_context()
            if sc.is_valid:
                links.append(trace.Link(sc))
        attrs: dict[str, Any] = {"messaging.system": "boostkernel", "messaging.destination.name": ctx.envelope.queue,
                 "messaging.message.id": ctx.envelope.id, "boostkernel.attempt": ctx.envelope.attempt}
        return self.tracer.start_as_current_span(f"run {ctx.envelope.queue}", context=parent,
                                                 kind=trace.SpanKind.CONSUMER, links=links, attributes=attrs)

    def around(self, ctx: TaskContext, call_next: Callable[[], Any]) -> Any:
        with self._span(ctx) as span:
            try:
                return call_next()
            finally:
                span.set_attribute("boostkernel.status", str(ctx.status))

    async def around_async(self, ctx: TaskContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        with self._span(ctx) as span:
            try:
                return await call_next()
            finally:
                span.set_attribute("boostkernel.status", str(ctx.status))
