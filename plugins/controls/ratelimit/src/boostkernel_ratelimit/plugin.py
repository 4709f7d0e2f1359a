"""Entry point of boostkernel-ratelimit (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

from .options import ORDER, RateLimitOptions


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("ratelimit", "boostkernel_ratelimit.control:RateLimit", options=RateLimitOptions, order=ORDER,
                         summary="Precise rate limit: qps task starts per second (fractional too), per process "
                                 "or global across machines (qps_scope='global')")
