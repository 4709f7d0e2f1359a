"""URL and option parsing of the pulsar broker (no pulsar-client import: used at decoration time and tested
without a server)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from boostkernel.errors import ConfigError
from boostkernel.logs import mask_url

_TOPIC = re.compile(r"^(persistent|non-persistent)://[^/\s]+/[^/\s]+/[^/\s]+$")


@dataclass(frozen=True)
class PulsarSettings:
    service_url: str
    topic: str
    subscription: str
    dlq_topic: str
    receiver_queue_size: int
    max_deliveries: int
    negative_ack_delay: float
    operation_timeout: float
    connect_timeout: float
    token: str | None


def topic_for(queue: str, tenant: str = "public", namespace: str = "default") -> str:
    """``persistent://TENANT/NAMESPACE/QUEUE`` (a queue name that is already a full topic is kept)."""
    if "://" in queue:
        if not _TOPIC.match(queue):
            raise ConfigError(f"pulsar topic {queue!r} is not valid: use persistent://TENANT/NAMESPACE/NAME")
        return queue
    if not queue or "/" in queue or any(c.isspace() for c in queue):
        raise ConfigError(f"queue name {queue!r} cannot be a Pulsar topic name: no '/', no spaces "
                          f"(or pass a full topic, persistent://TENANT/NAMESPACE/NAME)")
    return f"persistent://{tenant}/{namespace}/{queue}"


def parse(url: str, queue: str, options: dict[str, Any], max_deliveries: int) -> PulsarSettings:
    """``pulsar://HOST:6650`` (``pulsar+ssl://`` for TLS) plus ``broker_options``: ``topic``, ``tenant``
    (``public``), ``namespace`` (``default``), ``subscription`` (``boostkernel``), ``dlq_topic``
    (``<topic>-boostkernel-DLQ``), ``receiver_queue_size`` (the prefetch, 100), ``negative_ack_delay``
    (seconds, 1), ``operation_timeout`` (30), ``connect_timeout`` (10), ``token`` (JWT authentication)."""
    u = urlparse(url)
    if u.scheme not in ("pulsar", "pulsar+ssl"):
        raise ConfigError(f"pulsar broker needs a pulsar://HOST:6650 or pulsar+ssl:// URL, got {mask_url(url)!r}")
    if not u.hostname:
        raise ConfigError(f"pulsar URL {mask_url(url)!r} has no host: use pulsar://HOST:6650")
    o = options
    topic = topic_for(str(o.get("topic", queue)), str(o.get("tenant", "public")), str(o.get("namespace", "default")))
    sub = str(o.get("subscription", "boostkernel"))
    if not sub or any(c.isspace() for c in sub):
        raise ConfigError(f"broker_options subscription={sub!r}: a non-empty name without spaces")
    rq = int(o.get("receiver_queue_size", o.get("prefetch", 100)))
    if rq < 1:
        raise ConfigError(f"broker_options receiver_queue_size={rq!r}: must be >= 1")
    if max_deliveries < 1:
        raise ConfigError(f"max_deliveries={max_deliveries!r}: Pulsar's dead-letter policy needs >= 1")
    nack = float(o.get("negative_ack_delay", 1.0))
    if nack < 0:
        raise ConfigError(f"broker_options negative_ack_delay={nack!r}: must be >= 0 seconds")
    netloc = u.hostname + (f":{u.port}" if u.port else ":6650" if u.scheme == "pulsar" else ":6651")
    return PulsarSettings(
        service_url=f"{u.scheme}://{netloc}", topic=topic, subscription=sub,
        dlq_topic=topic_for(str(o.get("dlq_topic", topic + "-" + sub + "-DLQ"))), receiver_queue_size=rq,
        max_deliveries=max_deliveries, negative_ack_delay=nack,
        operation_timeout=float(o.get("operation_timeout", 30.0)),
        connect_timeout=float(o.get("connect_timeout", 10.0)),
        token=str(o["token"]) if o.get("token") else (u.password or None),
    )
