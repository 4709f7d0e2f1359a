"""The Redis brokers and store on a Redis Cluster (3 masters) and through Redis Sentinel.

Both run privately: ``.ci/services.d/redis-cluster.sh`` starts a 3-master cluster on 127.0.0.1:7000-7002 and
a master (7010) watched by one sentinel (7011, service ``bkmaster``). Override with
``BOOSTKERNEL_REDISCLUSTER_URL`` / ``BOOSTKERNEL_REDISSENTINEL_URL``.

* the kernel's broker contract for ``redis`` (plain and auto-batch), ``redis-streams``, ``redis-pubsub`` and
  the store contract, all on the cluster; queues spread over the three masters;
* the reliable list's recovery of a dead consumer on the cluster;
* kill -9 chaos on the cluster (short scenario): a worker SIGKILLed repeatedly loses nothing;
* Sentinel: broker and store reach the master through the sentinel; malformed URLs are refused clearly.
"""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from boostkernel.broker import Outgoing
from boostkernel.errors import ConfigError
from boostkernel.message import Envelope
from boostkernel.testing import BrokerContract, StoreContract, wait_until
from boostkernel.testing.helpers import service_url

os.environ.setdefault("BOOSTKERNEL_REDISCLUSTER_URL", "redis+cluster://127.0.0.1:7000")
os.environ.setdefault("BOOSTKERNEL_REDISSENTINEL_URL", "redis+sentinel://127.0.0.1:7011/bkmaster")

FAST = {"heartbeat_interval": 0.2, "dead_after": 1.0, "reap_interval": 0.3, "idle_poll": 0.1}


def _single_redis_contract() -> Any:
    """test_contract.py of this folder: the cluster classes share its delivery settings and known gaps."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bk_redis_contract", Path(__file__).with_name("test_contract.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_single_module = _single_redis_contract()
_single = _single_module._RedisDelivery
_maker = _single_module._maker


class _ClusterDelivery(BrokerContract):
    lease_seconds = _single.lease_seconds
    recovery_seconds = _single.recovery_seconds
    # the same known gaps as on a single Redis (no private server to restart here)
    expected_failures = dict(_single.expected_failures)
cluster = pytest.mark.service("rediscluster")
sentinel = pytest.mark.service("redissentinel")


def _msg(i: int = 0) -> Outgoing:
    env = Envelope("t", [i], {})
    return Outgoing(env.id, env.encode())


@cluster
class TestClusterListContract(_ClusterDelivery):
    make_broker = _maker("boostkernel_redis.broker:RedisBroker", service="rediscluster", **FAST)


@cluster
class TestClusterListAutoBatchContract(_ClusterDelivery):
    make_broker = _maker("boostkernel_redis.broker:RedisBroker", service="rediscluster", auto_batch=True, **FAST)


@cluster
class TestClusterStreamsContract(_ClusterDelivery):
    make_broker = _maker("boostkernel_redis.streams:RedisStreamsBroker", service="rediscluster", **FAST)


@cluster
class TestClusterPubSubContract(BrokerContract):
    make_broker = _maker("boostkernel_redis.pubsub:RedisPubSubBroker", service="rediscluster")


@cluster
class TestClusterStoreContract(StoreContract):
    make_store = _single_module._store_maker("rediscluster")


@cluster
def test_queues_spread_over_the_masters_and_each_queue_stays_in_one_slot() -> None:
    from boostkernel_redis.broker import RedisBroker

    brokers = [RedisBroker(f"spread_{uuid.uuid4().hex[:8]}", service_url("rediscluster"), None, **FAST)
               for _ in range(12)]
    try:
        nodes = set()
        for b in brokers:
            b.publish(_msg())
            b.publish(Outgoing(_msg().id, _msg().body, 5, None))  # another list of the same queue
            got = b.fetch(2, 2)
            assert len(got) == 2
            assert len({b.redis.keyslot(k) for k in (b._q0, b._q0 + ":5", b._inflight, b._landing)}) == 1
            nodes.add(b.redis.get_node_from_key(b._q0).name)
            b.ack_many(got)
        assert len(nodes) >= 2, "12 queues all hashed to one master: the test proves nothing about a cluster"
    finally:
        for b in brokers:
            b.close()
            b.purge()


@cluster
def test_a_dead_consumers_messages_come_back_on_the_cluster(unique_queue: str) -> None:
    from boostkernel_redis._common import maintenance
    from boostkernel_redis.broker import RedisBroker

    url = service_url("rediscluster")
    dead, alive = RedisBroker(unique_queue, url, None, **FAST), RedisBroker(unique_queue, url, None, **FAST)
    try:
        dead.publish_many([_msg(i) for i in range(5)])
        held = dead.fetch(5, 2)
        assert len(held) == 5
        maintenance.remove(dead)  # kill -9: no heartbeat, nothing released
        dead._closed, dead._started = True, False
        got: list[Any] = []
        assert wait_until(lambda: got.extend(alive.fetch(5, 0.2)) or len(got) >= 5, timeout=15)
        assert sorted(d.id for d in got) == sorted(d.id for d in held)
        assert all(d.delivery_count == 2 for d in got)
        alive.ack_many(got)
        assert wait_until(lambda: alive.in_flight() == 0, timeout=5)
    finally:
        alive.close()
        alive.purge()


WORKER = '''
import random, time
from boostkernel import boost
from boostkernel.testing.chaos import Ledger

ledger = Ledger({ledger!r})


@boost({queue!r}, broker="redis", broker_url={url!r}, workers=20, max_deliveries=1000,
       broker_options={{"heartbeat_interval": 0.5, "dead_after": 3.0, "reap_interval": 1.0, "idle_poll": 0.2}})
def work(i):
    time.sleep(random.uniform(0.05, 0.15))
    ledger.record(i)
'''


@cluster
@pytest.mark.serial
@pytest.mark.timeout(240)
def test_kill_9_chaos_on_the_cluster_loses_nothing(tmp_path: Path) -> None:
    from boostkernel.testing.chaos import Ledger, WorkerProcess, kill_loop

    n = 2000
    queue = f"clchaos_{uuid.uuid4().hex[:8]}"
    module = f"clchaos_{uuid.uuid4().hex[:8]}"
    ledger_path = tmp_path / "ledger.db"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(WORKER.format(
        ledger=str(ledger_path), queue=queue, url=service_url("rediscluster"))))
    ledger = Ledger(ledger_path)
    sys.path.insert(0, str(tmp_path))
    try:
        tasks = __import__(module)
    finally:
        sys.path.remove(str(tmp_path))
    tasks.work.push_many([(i,) for i in range(n)])
    assert tasks.work.count() == n

    worker = WorkerProcess(module, tmp_path, env={"BOOSTKERNEL_PLUGINS": "redis,threads,builtin"})
    worker.start()
    assert worker.wait_ready(60), worker.log()[-3000:]
    kills = kill_loop(worker, every=1.5, duration=9)
    assert wait_until(lambda: len(ledger.keys()) >= n, timeout=120, interval=0.5), worker.log()[-3000:]
    assert worker.wait_ready(60)
    broker = tasks.work.make_broker()
    try:
        # the last worker reaps every killed one; then a graceful stop returns what it prefetched
        assert wait_until(lambda: broker.redis.scard(broker.base + ":consumers") <= 1, timeout=20)
        assert worker.terminate() == 0, worker.log()[-3000:]
        report = ledger.check(range(n))
        report.kills = kills
        print("\nredis cluster chaos:", report.summary())
        assert report.lost == [], f"{len(report.lost)} lost"
        assert report.unexpected == []
        assert broker.count() == 0 and broker.in_flight() == 0
        assert broker.dead_letters() == []
        assert kills >= 4
        assert "message(s) of dead workers to the queue" in worker.log(), "no kill hit a message in flight"
    finally:
        broker.purge()
        broker.close()


# --- Sentinel -------------------------------------------------------------------------------------------
@sentinel
def test_broker_and_store_through_sentinel(unique_queue: str) -> None:
    from boostkernel_redis.broker import RedisBroker
    from boostkernel_redis.store import RedisStore

    url = service_url("redissentinel")
    b = RedisBroker(unique_queue, url, None, **FAST)
    try:
        m = _msg()
        b.publish(m)  # the publisher's own connection, found through the sentinel
        b.publish_many([_msg(1)])
        got = b.fetch(2, 2)
        assert {d.id for d in got} >= {m.id}
        b.ack_many(got)
        assert wait_until(lambda: b.in_flight() == 0, timeout=5)
        host, port = b.redis.connection_pool.get_master_address()
        assert int(port) == 7010 or "BOOSTKERNEL_REDISSENTINEL_URL" in os.environ
    finally:
        b.close()
        b.purge()
    s = RedisStore(url, None, key_prefix=f"bktest-{uuid.uuid4().hex[:8]}")
    s.put_result("t", {"status": "success", "result": 3}, 30)
    assert s.get_result("t", 1) == {"status": "success", "result": 3}


@pytest.mark.parametrize("url", [
    "redis+sentinel://127.0.0.1:26379",  # no service name
    "redis+sentinel://127.0.0.1:26379/svc/x",  # db is not a number
    "redis+sentinel://127.0.0.1:notaport/svc",
    "redis+cluster://127.0.0.1:7000/3",  # a cluster has only db 0
    "memcache://127.0.0.1",
])
def test_malformed_cluster_and_sentinel_urls_are_refused_clearly(url: str) -> None:
    from boostkernel_redis._common import client

    with pytest.raises(ConfigError):
        client(url, {"socket_connect_timeout": 0.5})


def test_sentinel_and_cluster_urls_select_the_redis_plugins() -> None:
    from boostkernel.plugins import get_plugins

    reg = get_plugins()
    for url in ("redis+cluster://h:7000", "rediss+cluster://h:7000", "redis+sentinel://h:26379/m"):
        assert reg.resolve_broker_name(url) == "redis"
