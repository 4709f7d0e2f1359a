"""Options of the dashboard's controls: their ``@boost`` parameters, defaults and documentation.

Each is its own control, instantiated only when its option is set, so a booster that sets none of them pays
nothing per message.
"""

from __future__ import annotations

from dataclasses import dataclass

from boostkernel.options import option

#: Positions in the control chain (lower runs first and wraps outermost); see docs/plugins.md.
ORDER_TRACING = 50  # outermost: the run span covers every other control
ORDER_MONITOR = 960
ORDER_METRICS = 970


@dataclass(frozen=True, kw_only=True)
class MonitorOptions:
    monitor: bool = option(False, "Report this worker and the queue's counters (outcomes, durations, running, "
                                  "publishes) to the store for `boostkernel dashboard`")
    monitor_interval: float = option(1.0, "Seconds between two reports of the monitor to the store", switch=False)


@dataclass(frozen=True, kw_only=True)
class MetricsOptions:
    metrics_port: int | None = option(
        None, "Serve Prometheus metrics of this worker process on this port (/metrics on 127.0.0.1; 0 = any "
              "free port)")
    metrics_host: str = option("127.0.0.1", "Address the worker's metrics endpoint binds to", switch=False)


@dataclass(frozen=True, kw_only=True)
class TracingOptions:
    tracing: bool = option(False, "OpenTelemetry spans for publish and run, the trace context carried in the "
                                  "message headers (needs an SDK/exporter configured by the application)")
