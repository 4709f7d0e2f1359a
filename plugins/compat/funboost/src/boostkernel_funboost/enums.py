"""``BrokerEnum`` and ``ConcurrentModeEnum`` of the reference system, and how each maps to boostkernel.

As in the reference system both are plain classes of string constants, so ``broker_kind=BrokerEnum.REDIS``
is a ``str`` and the value a user stored in a settings file still works. Every member is in
:data:`BROKER_MAP`: either mapped to a boostkernel broker plugin (``Mapped``) or refused (``Refused``) with
the nearest broker we have. A mapped name whose plugin is not installed fails at decoration time with the
kernel's install hint (``pip install "boostkernel[NAME]"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from boostkernel import ConfigError


class BrokerEnum:
    """The reference system's broker kinds (50 names, 46 distinct values; 4 are aliases)."""

    EMPTY = "EMPTY"
    RABBITMQ_AMQPSTORM = "RABBITMQ_AMQPSTORM"
    RABBITMQ = RABBITMQ_AMQPSTORM
    RABBITMQ_COMPLEX_ROUTING = "RABBITMQ_COMPLEX_ROUTING"
    RABBITMQ_RABBITPY = "RABBITMQ_RABBITPY"
    RABBITMQ_AMQP = "RABBITMQ_AMQP"
    RABBITMQ_PIKA = "RABBITMQ_PIKA"
    REDIS = "REDIS"
    REDIS_ACK_ABLE = "REDIS_ACK_ABLE"
    REIDS_ACK_USING_TIMEOUT = "reids_ack_using_timeout"  # (sic) the reference system's spelling
    REDIS_PRIORITY = "REDIS_PRIORITY"
    REDIS_STREAM = "REDIS_STREAM"
    REDIS_BRPOP_LPUSH = "RedisBrpopLpush"
    REDIS_PUBSUB = "REDIS_PUBSUB"
    MEMORY_QUEUE = "MEMORY_QUEUE"
    LOCAL_PYTHON_QUEUE = MEMORY_QUEUE
    FASTEST_MEM_QUEUE = "FASTEST_MEM_QUEUE"
    MONGOMQ = "MONGOMQ"
    SQLITE_QUEUE = "sqlite3"
    PERSISTQUEUE = SQLITE_QUEUE
    NSQ = "NSQ"
    KAFKA = "KAFKA"
    KAFKA_CONFLUENT = "KAFKA_CONFLUENT"
    CONFLUENT_KAFKA = KAFKA_CONFLUENT
    KAFKA_CONFLUENT_SASlPlAIN = "KAFKA_CONFLUENT_SASlPlAIN"  # noqa: N815 - the reference system's name
    SQLACHEMY = "SQLACHEMY"
    PEEWEE = "PEEWEE"
    POSTGRES = "POSTGRES"
    ROCKETMQ = "ROCKETMQ"
    ROCKETMQ5 = "ROCKETMQ5"
    ZEROMQ = "ZEROMQ"
    KOMBU = "KOMBU"
    MQTT = "MQTT"
    HTTPSQS = "HTTPSQS"
    PULSAR = "PULSAR"
    UDP = "UDP"
    TCP = "TCP"
    HTTP = "HTTP"
    GRPC = "GRPC"
    NATS = "NATS"
    TXT_FILE = "TXT_FILE"
    CELERY = "CELERY"
    DRAMATIQ = "DRAMATIQ"
    HUEY = "HUEY"
    RQ = "RQ"
    NAMEKO = "NAMEKO"
    MYSQL_CDC = "MYSQL_CDC"
    SQS = "SQS"
    WATCHDOG = "WATCHDOG"
    WEBSOCKET = "WEBSOCKET"


class ConcurrentModeEnum:
    """The reference system's concurrency modes; processes stack on top (``multi_process_consume``)."""

    THREADING = "threading"
    GEVENT = "gevent"
    EVENTLET = "eventlet"
    ASYNC = "async"
    SINGLE_THREAD = "single_thread"
    SOLO = SINGLE_THREAD


#: ConcurrentModeEnum value -> boostkernel ``concurrency`` plugin.
CONCURRENCY_MAP: dict[str, str] = {
    "threading": "threads", "gevent": "gevent", "eventlet": "eventlet", "async": "asyncio",
    "single_thread": "solo",
}
#: The integer codes of the older API (``get_consumer(..., broker_kind=9)``) -> BrokerEnum value.
LEGACY_BROKER_CODES: dict[int, str] = {
    0: BrokerEnum.RABBITMQ_AMQPSTORM, 1: BrokerEnum.RABBITMQ_RABBITPY, 2: BrokerEnum.REDIS,
    3: BrokerEnum.MEMORY_QUEUE, 4: BrokerEnum.RABBITMQ_PIKA, 5: BrokerEnum.MONGOMQ, 6: BrokerEnum.PERSISTQUEUE,
    7: BrokerEnum.NSQ, 8: BrokerEnum.KAFKA, 9: BrokerEnum.REDIS_ACK_ABLE, 10: BrokerEnum.SQLACHEMY,
    11: BrokerEnum.ROCKETMQ, 12: BrokerEnum.REDIS_STREAM, 13: BrokerEnum.ZEROMQ,
    14: BrokerEnum.REDIS_BRPOP_LPUSH, 15: BrokerEnum.MQTT, 16: BrokerEnum.HTTPSQS,
}


@dataclass(frozen=True)
class Mapped:
    """A broker kind that runs on boostkernel broker ``broker`` (with ``options`` as broker_options)."""

    broker: str
    note: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """A broker kind with no equivalent: decoration fails with ``reason`` and the ``nearest`` broker."""

    nearest: str
    reason: str


_AT_LEAST_ONCE = "boostkernel's redis broker acknowledges after execution (at-least-once) for every Redis kind"

#: BrokerEnum value -> what it becomes here.
BROKER_MAP: dict[str, Mapped | Refused] = {
    BrokerEnum.EMPTY: Refused("memory", "EMPTY is the reference system's base for a hand-written consumer class; "
                              "write a broker plugin instead (docs/plugins.md, examples/third_party_plugin)"),
    BrokerEnum.RABBITMQ_AMQPSTORM: Mapped("rabbitmq"),
    BrokerEnum.RABBITMQ_COMPLEX_ROUTING: Refused(
        "rabbitmq", "exchange routing (fanout/topic/headers bindings) is not part of boostkernel's rabbitmq broker, "
        "which publishes to one durable queue per booster"),
    BrokerEnum.RABBITMQ_RABBITPY: Mapped("rabbitmq", "one RabbitMQ broker plugin serves every RabbitMQ client kind"),
    BrokerEnum.RABBITMQ_AMQP: Mapped("rabbitmq", "one RabbitMQ broker plugin serves every RabbitMQ client kind"),
    BrokerEnum.RABBITMQ_PIKA: Mapped("rabbitmq"),
    BrokerEnum.REDIS: Mapped("redis", _AT_LEAST_ONCE + " (the reference REDIS kind loses in-flight messages)"),
    BrokerEnum.REDIS_ACK_ABLE: Mapped("redis"),
    BrokerEnum.REIDS_ACK_USING_TIMEOUT: Mapped("redis", "leases with heartbeats replace the one-hour ack timeout"),
    BrokerEnum.REDIS_PRIORITY: Mapped("redis", "priority comes from TaskOptions(priority=...)"),
    BrokerEnum.REDIS_STREAM: Mapped("redis-streams"),
    BrokerEnum.REDIS_BRPOP_LPUSH: Mapped("redis"),
    BrokerEnum.REDIS_PUBSUB: Mapped("redis-pubsub"),
    BrokerEnum.MEMORY_QUEUE: Mapped("memory"),
    BrokerEnum.FASTEST_MEM_QUEUE: Mapped("memory", "one in-process queue serves both memory kinds"),
    BrokerEnum.MONGOMQ: Mapped("mongodb"),
    BrokerEnum.SQLITE_QUEUE: Mapped("sqlite"),
    BrokerEnum.NSQ: Mapped("nsq"),
    BrokerEnum.KAFKA: Mapped("kafka"),
    BrokerEnum.KAFKA_CONFLUENT: Mapped("confluent-kafka"),
    BrokerEnum.KAFKA_CONFLUENT_SASlPlAIN: Mapped(
        "confluent-kafka", "give the SASL settings in broker_exclusive_config (passed as broker_options)"),
    BrokerEnum.SQLACHEMY: Mapped("sql"),
    BrokerEnum.PEEWEE: Mapped("sql", "the SQLAlchemy-based 'sql' broker serves MySQL/MariaDB (broker_url=mysql+...)"),
    BrokerEnum.POSTGRES: Mapped("postgres"),
    BrokerEnum.ROCKETMQ: Mapped("rocketmq"),
    BrokerEnum.ROCKETMQ5: Mapped("rocketmq"),
    BrokerEnum.ZEROMQ: Mapped("zeromq"),
    BrokerEnum.KOMBU: Mapped("kombu"),
    BrokerEnum.MQTT: Mapped("mqtt"),
    BrokerEnum.HTTPSQS: Refused("http", "there is no httpsqs client here; an HTTP push broker ('http') or a "
                                "durable queue ('redis', 'sqlite') replaces it"),
    BrokerEnum.PULSAR: Mapped("pulsar"),
    BrokerEnum.UDP: Mapped("udp"),
    BrokerEnum.TCP: Mapped("tcp"),
    BrokerEnum.HTTP: Mapped("http"),
    BrokerEnum.GRPC: Mapped("grpc"),
    BrokerEnum.NATS: Mapped("nats"),
    BrokerEnum.TXT_FILE: Mapped("file"),
    BrokerEnum.CELERY: Mapped("celery"),
    BrokerEnum.DRAMATIQ: Mapped("dramatiq"),
    BrokerEnum.HUEY: Mapped("huey"),
    BrokerEnum.RQ: Mapped("rq"),
    BrokerEnum.NAMEKO: Mapped("nameko"),
    BrokerEnum.MYSQL_CDC: Mapped("mysql-binlog", "binlog row events become messages; nothing is published"),
    BrokerEnum.SQS: Mapped("sqs"),
    BrokerEnum.WATCHDOG: Refused("file", "file-system events are not a broker here; publish a task per file "
                                "from your own watcher, or use the 'file' broker (a durable folder queue)"),
    BrokerEnum.WEBSOCKET: Mapped("websocket"),
}

_BY_NAME: dict[str, str] = {name: value for name, value in vars(BrokerEnum).items() if name.isupper() or
                            name == "KAFKA_CONFLUENT_SASlPlAIN"}


def broker_members() -> dict[str, str]:
    """Every BrokerEnum attribute name -> its value (aliases included)."""
    return dict(_BY_NAME)


def resolve_broker_kind(kind: Any) -> Mapped:
    """The boostkernel broker for a BrokerEnum value (or member name, or legacy integer code)."""
    value: Any = kind
    if isinstance(kind, int) and not isinstance(kind, bool):
        if kind not in LEGACY_BROKER_CODES:
            raise ConfigError(f"broker_kind={kind!r}: unknown integer code of the older API; use a BrokerEnum "
                              "member, e.g. broker_kind=BrokerEnum.REDIS_ACK_ABLE")
        value = LEGACY_BROKER_CODES[kind]
    elif isinstance(kind, str) and kind not in BROKER_MAP:
        folded = {k.lower(): v for k, v in _BY_NAME.items()} | {v.lower(): v for v in _BY_NAME.values()}
        value = folded.get(kind.lower(), kind)
    entry = BROKER_MAP.get(value) if isinstance(value, str) else None
    if entry is None:
        import difflib

        close = difflib.get_close_matches(str(kind).upper(), list(_BY_NAME), n=1)
        hint = f"; did you mean BrokerEnum.{close[0]}?" if close else ""
        raise ConfigError(f"broker_kind={kind!r} is not a BrokerEnum member{hint} "
                          "(or pass boostkernel's own broker name as broker=...)")
    if isinstance(entry, Refused):
        name = next((n for n, v in _BY_NAME.items() if v == value), value)
        raise ConfigError(f"BrokerEnum.{name} has no boostkernel equivalent: {entry.reason}. "
                          f"The nearest is broker_kind -> broker={entry.nearest!r} "
                          f"(docs/migration-funboost.md lists every broker kind)")
    return entry


def resolve_concurrent_mode(mode: Any) -> str:
    """The boostkernel ``concurrency`` plugin for a ConcurrentModeEnum value."""
    if isinstance(mode, int) and not isinstance(mode, bool):  # the older API's integer codes
        mode = {1: "threading", 2: "gevent", 3: "eventlet", 4: "async", 5: "single_thread"}.get(mode, mode)
    key = str(mode).lower() if mode is not None else "threading"
    key = {"thread": "threading", "solo": "single_thread", "asyncio": "async"}.get(key, key)
    if key not in CONCURRENCY_MAP:
        raise ConfigError(f"concurrent_mode={mode!r}: use a ConcurrentModeEnum member "
                          f"({', '.join(sorted(CONCURRENCY_MAP))}); processes stack on top with "
                          "multi_process_consume(n)")
    return CONCURRENCY_MAP[key]
