"""Entry point of boostkernel-redis. Imports nothing heavy: redis-py is imported when a broker is used."""

from __future__ import annotations

from boostkernel import hookimpl
from boostkernel.plugins import Registry

# redis, TLS, Redis Cluster, Redis Sentinel (kept here: plugin.py must not import redis-py)
SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")


@hookimpl
def register_brokers(registry: Registry) -> None:
    registry.add_broker("redis", "boostkernel_redis.broker:RedisBroker", schemes=SCHEMES,
                        summary="Reliable Redis list: atomic fetch into per-consumer in-flight hash, heartbeats, "
                                "reaper, priority, native delay, DLQ (at-least-once)")
    registry.add_broker("redis-streams", "boostkernel_redis.streams:RedisStreamsBroker",
                        summary="Redis Streams consumer group: XREADGROUP, XACK+XDEL, heartbeat-guided "
                                "XAUTOCLAIM of dead consumers' entries (at-least-once)")
    registry.add_broker("redis-pubsub", "boostkernel_redis.pubsub:RedisPubSubBroker",
                        summary="Redis pub/sub fan-out to every subscriber (at-most-once, no persistence)")


@hookimpl
def register_stores(registry: Registry) -> None:
    registry.add_store("redis", "boostkernel_redis.store:RedisStore", schemes=SCHEMES,
                       summary="Results (push wait), counters, flags, locks and heartbeats in Redis (cross-host)")
