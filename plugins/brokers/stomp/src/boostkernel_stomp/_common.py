"""URL and option parsing of the stomp broker (no stomp.py import: used at decoration time and in tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from boostkernel.errors import ConfigError
from boostkernel.logs import mask_url

DEFAULT_PORT = 61613
COUNT_WITH = ("auto", "statistics", "browser")


@dataclass(frozen=True)
class StompSettings:
    url: str
    host: str
    port: int
    user: str | None
    password: str | None
    ssl: bool
    vhost: str | None
    prefix: str
    dlq_suffix: str
    heartbeat_ms: int
    connect_timeout: float
    publish_timeout: float
    publish_batch: int
    delay_header: str | None
    drain_idle: float
    count_with: str
    stats_timeout: float


def parse_url(url: str, options: dict[str, Any]) -> StompSettings:
    """``stomp://[user[:password]@]host[:port][/vhost]`` (``stomp+ssl://`` for TLS) plus ``broker_options``.

    Options: ``destination_prefix`` (``/queue/``), ``dlq_suffix`` (``.dlq``), ``heartbeat`` (seconds, 10),
    ``connect_timeout`` (10), ``publish_timeout`` (30), ``publish_batch`` (500 messages per transaction),
    ``delay_header`` (``AMQ_SCHEDULED_DELAY``; ``None`` where the server has no scheduler), ``drain_idle``
    (seconds without a message that end a purge or replay, 0.5), ``count_with`` (``auto``: ActiveMQ's
    statistics plugin, else the queue browser; ``statistics``; ``browser``), ``stats_timeout`` (seconds to
    wait for the statistics plugin's reply before ``auto`` falls back to the browser, 5)."""
    u = urlparse(url)
    if u.scheme not in ("stomp", "stomp+ssl", "stomp+tls"):
        raise ConfigError(f"stomp broker needs a stomp:// or stomp+ssl:// URL (e.g. stomp://127.0.0.1:61613), "
                          f"got {mask_url(url)!r}")
    if not u.hostname:
        raise ConfigError(f"stomp URL {mask_url(url)!r} has no host: use stomp://HOST:61613")
    try:
        port = u.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"stomp URL {mask_url(url)!r}: the port is not a number") from None
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    o = {**q, **options}
    vhost = unquote(u.path.lstrip("/")) or None
    prefix = str(o.get("destination_prefix", "/queue/"))
    if not prefix.startswith("/"):
        raise ConfigError(f"broker_options destination_prefix={prefix!r}: must start with '/' (e.g. '/queue/')")

    def num(name: str, default: float, low: float) -> float:
        try:
            v = float(o.get(name, default))
        except (TypeError, ValueError):
            raise ConfigError(f"broker_options {name}={o.get(name)!r}: must be a number") from None
        if v < low:
            raise ConfigError(f"broker_options {name}={v!r}: must be >= {low}")
        return v

    delay = o.get("delay_header", "AMQ_SCHEDULED_DELAY")
    count_with = str(o.get("count_with", "auto"))
    if count_with not in COUNT_WITH:
        raise ConfigError(f"broker_options count_with={count_with!r}: must be one of {', '.join(COUNT_WITH)}")
    return StompSettings(
        url=url, host=u.hostname, port=port, user=unquote(u.username) if u.username else None,
        password=unquote(u.password) if u.password else None, ssl=u.scheme != "stomp", vhost=vhost,
        prefix=prefix, dlq_suffix=str(o.get("dlq_suffix", ".dlq")),
        heartbeat_ms=int(num("heartbeat", 10.0, 0) * 1000), connect_timeout=num("connect_timeout", 10.0, 0.1),
        publish_timeout=num("publish_timeout", 30.0, 0.1), publish_batch=int(num("publish_batch", 500, 1)),
        delay_header=str(delay) if delay not in (None, "", "none") else None,
        drain_idle=num("drain_idle", 0.5, 0.05), count_with=count_with,
        stats_timeout=num("stats_timeout", 5.0, 0.1),
    )
