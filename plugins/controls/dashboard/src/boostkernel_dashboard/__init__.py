"""boostkernel-dashboard: the web dashboard (``boostkernel dashboard``), Prometheus metrics and
OpenTelemetry tracing.

* ``@boost(..., monitor=True)`` - the worker reports itself and its queue's counters to the store;
* ``@boost(..., metrics_port=9100)`` - the worker serves Prometheus metrics;
* ``@boost(..., tracing=True)`` - publish and run spans, linked through the message headers;
* :func:`create_app` - the Starlette application ``boostkernel dashboard`` serves.
"""

from __future__ import annotations

from typing import Any


def create_app(boosters: Any, **kwargs: Any) -> Any:
    """The dashboard's Starlette application for ``boosters`` (see :func:`boostkernel_dashboard.app.create_app`)."""
    from .app import create_app as _create

    return _create(boosters, **kwargs)


__all__ = ["create_app"]
