"""URL parsing and message framing of the nsq broker (no client import: used at decoration time and tested
without a server)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

from boostkernel.broker import lease_options, name_option
from boostkernel.errors import ConfigError
from boostkernel.logs import mask_url

_NAME = re.compile(r"^[.a-zA-Z0-9_-]{1,64}(#ephemeral)?$")
_NAME_RULE = "1-64 characters of letters, digits, '.', '_', '-' (optionally ending in '#ephemeral')"
FRAME = b"\x01bk1 "
"""Bodies published by this plugin start with ``FRAME``, the message id and a newline: NSQ messages have no
headers, and nsqd assigns its own ids, so the envelope's id travels in the body."""


@dataclass(frozen=True)
class NsqSettings:
    url: str
    host: str
    port: int
    http_port: int
    topic: str
    channel: str
    dlq_topic: str
    msg_timeout: float
    touch_interval: float
    max_in_flight: int
    connect_timeout: float


def parse(url: str, queue: str, options: dict[str, Any]) -> NsqSettings:
    """``nsq://HOST[:4150][?http_port=4151]`` plus ``broker_options``: ``topic`` (the queue name),
    ``channel`` (``boostkernel``), ``dlq_topic`` (``<topic>.dlq``), ``msg_timeout`` (seconds nsqd waits
    for FIN/TOUCH, 60), ``touch_interval`` (a third of msg_timeout), ``max_in_flight`` (RDY, 100),
    ``connect_timeout`` (10)."""
    u = urlparse(url)
    if u.scheme != "nsq":
        raise ConfigError(f"nsq broker needs an nsq://HOST:4150 URL (nsqd's TCP address), got {mask_url(url)!r}")
    if not u.hostname:
        raise ConfigError(f"nsq URL {mask_url(url)!r} has no host: use nsq://HOST:4150")
    try:
        port = u.port or 4150
    except ValueError:
        raise ConfigError(f"nsq URL {mask_url(url)!r}: the port is not a number") from None
    o = {**{k: v[-1] for k, v in parse_qs(u.query).items()}, **options}
    topic = name_option(o, "topic", queue, _NAME, "nsq", _NAME_RULE)
    channel = name_option(o, "channel", "boostkernel", _NAME, "nsq", _NAME_RULE)
    dlq = name_option(o, "dlq_topic", (topic + ".dlq")[-64:], _NAME, "nsq", _NAME_RULE)
    msg_timeout, touch = lease_options(o, "msg_timeout", 60.0, "touch_interval", "nsqd's minimum")
    rdy = int(o.get("max_in_flight", 100))
    if rdy < 1:
        raise ConfigError(f"broker_options max_in_flight={rdy!r}: must be >= 1")
    return NsqSettings(url=url, host=u.hostname, port=port, http_port=int(o.get("http_port", 4151)), topic=topic,
                       channel=channel, dlq_topic=dlq, msg_timeout=msg_timeout, touch_interval=touch,
                       max_in_flight=rdy, connect_timeout=float(o.get("connect_timeout", 10.0)))


def frame(message_id: str, body: bytes, crashes: int = 0) -> bytes:
    head = message_id if not crashes else f"{message_id} {crashes}"
    return FRAME + head.encode() + b"\n" + body


def unframe(raw: bytes, nsq_id: str) -> tuple[str, bytes, int]:
    """(message id, body, crashes): a framed body gives the id (and crash count) it carries; a foreign
    one the nsqd id and 0."""
    if raw.startswith(FRAME):
        head, sep, body = raw[len(FRAME):].partition(b"\n")
        if sep:
            mid, _, crashes = head.decode(errors="replace").partition(" ")
            return mid, body, int(crashes) if crashes.isdigit() else 0
    return nsq_id, raw, 0


def dead_record(message_id: str, body: bytes, reason: str, failed_at: float) -> bytes:
    """A dead letter on the DLQ topic: JSON with the reason (NSQ messages carry no headers)."""
    return json.dumps({"id": message_id, "reason": reason, "failed_at": failed_at,
                       "body": base64.b64encode(body).decode()}).encode()


def read_dead_record(raw: bytes) -> tuple[str, bytes, str, float]:
    d = json.loads(raw)
    return str(d["id"]), base64.b64decode(d["body"]), str(d.get("reason", "")), float(d.get("failed_at", 0))
