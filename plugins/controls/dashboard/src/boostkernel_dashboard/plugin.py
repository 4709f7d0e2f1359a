"""Entry point of boostkernel-dashboard (imports nothing heavy: Starlette, uvicorn, prometheus-client and
OpenTelemetry are imported when the dashboard starts or a control that needs them is switched on)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER_METRICS, ORDER_MONITOR, ORDER_TRACING, MetricsOptions, MonitorOptions, TracingOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("monitor", "boostkernel_dashboard.monitor:MonitorControl", options=MonitorOptions,
                         order=ORDER_MONITOR,
                         summary="Worker heartbeats and per-queue counters in the store, for the dashboard")
    registry.add_control("metrics", "boostkernel_dashboard.metrics:MetricsControl", options=MetricsOptions,
                         order=ORDER_METRICS, summary="Prometheus metrics served by each worker process")
    registry.add_control("tracing", "boostkernel_dashboard.tracing:TracingControl", options=TracingOptions,
                         order=ORDER_TRACING,
                         summary="OpenTelemetry spans for publish and run, linked through the message headers")
    registry.add_command("dashboard", factory="boostkernel_dashboard.cli:dashboard_command",
                         summary="boostkernel dashboard [MODULE]: the web dashboard (queues, workers, task "
                                 "records, charts, actions, /metrics)")

