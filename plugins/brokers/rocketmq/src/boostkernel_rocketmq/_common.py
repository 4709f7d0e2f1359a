"""URL and option parsing of the rocketmq broker (no client import: used at decoration time and tested
without a server)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from boostkernel.broker import lease_options, name_option
from boostkernel.errors import ConfigError
from boostkernel.logs import mask_url

_NAME = re.compile(r"^[%|a-zA-Z0-9_-]{1,127}$")
_NAME_RULE = "1-127 letters, digits, '_', '-', '%' or '|'"


@dataclass(frozen=True)
class RocketmqSettings:
    url: str
    endpoints: str
    topic: str
    group: str
    dlq_topic: str
    access_key: str
    secret_key: str
    namespace: str
    invisible_duration: float
    heartbeat_interval: float
    await_duration: float
    request_timeout: float
    tls: bool


def parse(url: str, queue: str, options: dict[str, Any]) -> RocketmqSettings:
    """``rocketmq://[ACCESS_KEY:SECRET_KEY@]HOST:8081[,HOST2:8081]`` (the proxy's gRPC endpoints;
    ``rocketmq+tls://`` for TLS) plus ``broker_options``: ``topic`` (the queue name), ``group``
    (``boostkernel``), ``dlq_topic`` (``%DLQ%<group>``, RocketMQ's own), ``namespace``,
    ``invisible_duration`` (seconds a received message stays hidden from the group, 10),
    ``heartbeat_interval`` (a third of it: renews it for held messages), ``await_duration`` (long poll,
    seconds, 1), ``request_timeout`` (3)."""
    u = urlparse(url)
    if u.scheme not in ("rocketmq", "rocketmq+tls"):
        raise ConfigError(f"rocketmq broker needs a rocketmq://HOST:8081 URL (the proxy's gRPC endpoint), "
                          f"got {mask_url(url)!r}")
    hosts = u.netloc.rsplit("@", 1)[-1]
    if not hosts or any(not h.strip() or ":" not in h for h in hosts.split(",")):
        raise ConfigError(f"rocketmq URL {mask_url(url)!r}: give HOST:PORT (comma-separated for several), "
                          f"e.g. rocketmq://127.0.0.1:8081")
    o = options
    topic = name_option(o, "topic", queue, _NAME, "rocketmq", _NAME_RULE)
    group = name_option(o, "group", "boostkernel", _NAME, "rocketmq", _NAME_RULE)
    inv, hb = lease_options(o, "invisible_duration", 10.0, "heartbeat_interval")
    return RocketmqSettings(
        url=url, endpoints=";".join(h.strip() for h in hosts.split(",")), topic=topic, group=group,
        dlq_topic=str(o.get("dlq_topic", f"%DLQ%{group}")),
        access_key=unquote(u.username or "") or str(o.get("access_key", "")),
        secret_key=unquote(u.password or "") or str(o.get("secret_key", "")),
        namespace=str(o.get("namespace", "")), invisible_duration=inv, heartbeat_interval=hb,
        await_duration=float(o.get("await_duration", 1.0)), request_timeout=float(o.get("request_timeout", 3.0)),
        tls=u.scheme == "rocketmq+tls")
