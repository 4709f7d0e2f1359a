"""Entry point of boostkernel-ratelimit (imports nothing heavy)."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.control import ORDER_RATE
from boostkernel.plugins import Registry


@hookimpl
def register_controls(registry: Registry) -> None:
    registry.add_control("ratelimit", "boostkernel_ratelimit.control:RateLimit", params=("qps", "qps_scope"),
                         order=ORDER_RATE,
                         summary="Precise rate limit: qps task starts per second (fractional too), per process "
                                 "or global across machines (qps_scope='global')")
