"""The zeromq broker: the broker contract for what it declares (at-most-once), and the listener checks."""

from __future__ import annotations

from boostkernel_zeromq.broker import ZeroMQBroker

from boostkernel.testing.listener import ListenerBrokerContract, ListenerContract


class TestZeroMQContract(ListenerBrokerContract):
    broker_class = ZeroMQBroker


class TestZeroMQListener(ListenerContract):
    broker_class = ZeroMQBroker


def test_competing_consumers_share_the_messages() -> None:
    """Two consumers on two addresses, one producer naming both: every message reaches exactly one."""
    from boostkernel.broker import Outgoing
    from boostkernel.testing.helpers import wait_until

    a = ZeroMQBroker("zmq_compete", "zmq://127.0.0.1:0")
    b = ZeroMQBroker("zmq_compete", "zmq://127.0.0.1:0")
    a.listen()
    b.listen()
    producer = ZeroMQBroker("zmq_compete", f"zmq://127.0.0.1:{a.addresses[0][1]},127.0.0.1:{b.addresses[0][1]}")
    try:
        got: dict[str, list[str]] = {"a": [], "b": []}
        ids: list[str] = []

        def drain() -> None:
            for name, c in (("a", a), ("b", b)):
                got[name] += [d.id for d in c.fetch(100, 0.05)]

        # the producer's second connection may come up a little after the first: publish in rounds until
        # both consumers have had a share, then check that every message arrived exactly once
        for r in range(100):
            batch = [f"id{r}-{i}" for i in range(20)]
            producer.publish_many([Outgoing(i, b"{}") for i in batch])
            ids += batch
            drain()
            if got["a"] and got["b"]:
                break
        assert got["a"] and got["b"], "both consumers got a share"
        assert wait_until(lambda: (drain(), len(got["a"]) + len(got["b"]) >= len(ids))[1], 10)
        assert sorted(got["a"] + got["b"]) == sorted(ids)  # none lost, none twice
    finally:
        producer.close()
        a.close()
        b.close()
