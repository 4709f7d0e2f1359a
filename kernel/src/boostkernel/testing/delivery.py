"""Delivery tests of the broker contract: what at-least-once means, checked in real processes.

:class:`DeliveryContract` is mixed into :class:`~boostkernel.testing.BrokerContract`; every broker that
declares ``ack`` runs these tests against its real service. Consumers that must die run in child
processes (:class:`ConsumerProcess`): ``python .../boostkernel/testing/_child.py SPEC``, a small agent that
builds the broker as ``cls(queue, url, **options)`` (the documented constructor) and fetches, starts
and acks on command, until the test SIGKILLs it.

Timing comes from the test class, so a plugin configures short intervals in ``make_broker`` and
declares them here (see the attributes of :class:`DeliveryContract`); every wait is on a condition.
"""

from __future__ import annotations

import json
import os
import queue as queue_mod
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..broker import Broker, Delivery, Outgoing
from ..message import Envelope
from .helpers import requires


def _msg(body: dict[str, Any] | None = None) -> Outgoing:
    env = Envelope("contract", [], body or {})
    return Outgoing(env.id, env.encode())


def child_spec(broker: Broker) -> dict[str, Any]:
    """How a child process rebuilds ``broker``: its class, queue, URL and constructor options."""
    cls = type(broker)
    spec = {"cls": f"{cls.__module__}:{cls.__qualname__}", "queue": broker.queue, "url": broker.url,
            "options": broker.options}
    try:
        json.dumps(spec)
    except TypeError as exc:
        raise TypeError(f"the delivery contract rebuilds the broker in child processes as "
                        f"{cls.__name__}(queue, url, **options); its options are not JSON ({exc}): "
                        f"override 'child_spec' in the test class") from exc
    return spec


class ConsumerProcess:
    """A broker consumer in a child process, driven over stdin/stdout; :meth:`kill` is SIGKILL."""

    def __init__(self, spec: dict[str, Any]) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_child.py")), json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
            bufsize=1)
        self._replies: queue_mod.Queue[dict[str, Any]] = queue_mod.Queue()
        self.events: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "ev" in msg:
                self.events.append(msg)
            else:
                self._replies.put(msg)
        self._replies.put({"error": "the consumer process exited", "exit": True})

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def call(self, op: str, wait: float = 60.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        try:
            reply = self._replies.get(timeout=wait)
        except queue_mod.Empty:
            raise AssertionError(f"consumer process: no answer to {op!r} in {wait}s") from None
        if "error" in reply:
            raise AssertionError(f"consumer process, {op!r}: {reply['error']}\n{''.join(self._stderr[-30:])}")
        return reply

    def fetch(self, n: int, at_least: int, timeout: float) -> list[dict[str, Any]]:
        """Fetch until it holds ``at_least`` new deliveries (or ``timeout``): [{"id", "count"}]."""
        got: list[dict[str, Any]] = self.call("fetch", timeout + 60, n=n, at_least=at_least,
                                              seconds=timeout)["got"]
        return got

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """Graceful: close the broker (unacked deliveries go back) and exit."""
        if self.proc.poll() is None:
            try:
                self.call("close", 30)
            except (AssertionError, OSError):
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass


class DeliveryContract:
    """At-least-once delivery, tested in real processes against the real service.

    Declare, in the test class, the timing that ``make_broker`` configures:
    """

    #: Seconds after which the broker, as ``make_broker`` configures it, would give a *silent*
    #: consumer's messages to another one (its lease, heartbeat timeout or visibility timeout). The
    #: live-long-task test holds a message for 3x this on a live consumer. Configure it short.
    lease_seconds: float = 1.0
    #: Seconds from a consumer's SIGKILL until its messages are fetchable again, with the settings of
    #: ``make_broker``. ``None``: the broker's declared ``capabilities.recovery_seconds`` (default 15).
    recovery_seconds: float | None = None
    #: The broker's crash-loop limit as ``make_broker`` configures it (the kernel's default is 3).
    max_deliveries: int = 3
    #: Messages in the competing-consumers tests.
    competing_messages: int = 2000
    #: Seconds the competing-consumers tests let the 4 consumers start before publishing: for brokers
    #: whose consumers must first join a group (Kafka's rebalance hands unacked messages to a newcomer).
    competing_warmup: float = 0.0
    #: ``False`` skips the delivery tests in this class, for a variant whose delivery path another class
    #: of the same test module already runs (e.g. the same broker with another publishing option).
    delivery_tests: bool = True

    #: Seconds within which a message published is fetchable (raise for slow brokers).
    settle_time: float = 5.0

    # --- hooks a plugin overrides -------------------------------------------------------------------
    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None] | None:
        """Return ``callable(broker)`` that drops the broker's connection(s) on the server side (e.g.
        ``CLIENT KILL`` for Redis, closing the connection via the management API, restarting a private
        instance). ``None``: the reconnect test is a strict xfail saying this hook is missing."""
        return None

    @pytest.fixture
    def restart_service(self) -> Callable[[], None] | None:
        """For brokers declaring ``durable``: return ``callable()`` that restarts the service the
        broker of ``make_broker`` talks to (a private instance started by the fixture; never a shared
        one), returning once it accepts connections again. ``None``: strict xfail saying it is missing."""
        return None

    def child_spec(self, broker: Broker) -> dict[str, Any]:
        """How child processes rebuild a broker made by ``make_broker`` (override if it is not
        ``type(b)(b.queue, b.url, **b.options)``)."""
        return child_spec(broker)

    # --- helpers ------------------------------------------------------------------------------------
    def fetch_all(self, broker: Broker, n: int, timeout: float | None = None) -> list[Delivery]:
        deadline = time.monotonic() + (timeout or self.settle_time)
        out: list[Delivery] = []
        while len(out) < n and time.monotonic() < deadline:
            out += broker.fetch(n - len(out), 0.2)
        return out

    def recovery_bound(self, broker: Broker) -> float:
        return self.recovery_seconds if self.recovery_seconds is not None else broker.capabilities.recovery_seconds

    @pytest.fixture
    def consumers(self) -> Iterator[Callable[[Broker], ConsumerProcess]]:
        started: list[ConsumerProcess] = []

        def spawn(broker: Broker) -> ConsumerProcess:
            c = ConsumerProcess(self.child_spec(broker))
            started.append(c)
            return c

        yield spawn
        for c in started:
            c.stop()

    def _fetch_ids(self, broker: Broker, want: set[str], timeout: float) -> dict[str, Delivery]:
        """Fetch until every id in ``want`` came (others are kept too); returns id -> delivery."""
        deadline = time.monotonic() + timeout
        got: dict[str, Delivery] = {}
        while not want <= got.keys() and time.monotonic() < deadline:
            for d in broker.fetch(max(1, len(want - got.keys())), 0.2):
                got[d.id] = d
        return got

    @staticmethod
    def _untestable(request: pytest.FixtureRequest, reason: str) -> None:
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))

    # --- crash and redelivery -----------------------------------------------------------------------
    @requires("ack", "cross_process")
    def test_crash_redelivers_everything_held(self, broker: Broker,
                                              consumers: Callable[[Broker], ConsumerProcess]) -> None:
        """A consumer process fetches N and is SIGKILLed: all N come back, counted as redeliveries,
        within the recovery bound (running and only-prefetched messages alike)."""
        msgs = [_msg({"i": i}) for i in range(10)]
        broker.publish_many(msgs)
        child = consumers(broker)
        held = child.fetch(10, 10, self.settle_time)
        assert sorted(h["id"] for h in held) == sorted(m.id for m in msgs), "the child could not fetch them"
        child.call("start", ids=[h["id"] for h in held[:5]])
        child.kill()
        t0 = time.monotonic()
        bound = self.recovery_bound(broker)
        back = self._fetch_ids(broker, {m.id for m in msgs}, bound)
        took = time.monotonic() - t0
        missing = {m.id for m in msgs} - back.keys()
        assert not missing, f"{len(missing)} of 10 messages of a killed consumer did not come back within {bound}s"
        assert all(d.delivery_count > 1 for d in back.values()), \
            f"redeliveries must have delivery_count > 1: {[d.delivery_count for d in back.values()]}"
        assert took <= bound, f"recovery took {took:.1f}s > the declared {bound}s"
        broker.ack_many(back.values())

    @requires("ack", "cross_process")
    def test_live_long_task_is_not_redelivered(self, broker: Broker,
                                               consumers: Callable[[Broker], ConsumerProcess]) -> None:
        """A live consumer running one message for 3x the lease keeps it: nobody else receives it."""
        m = _msg()
        broker.publish(m)
        child = consumers(broker)
        held = child.fetch(1, 1, self.settle_time)
        assert [h["id"] for h in held] == [m.id]
        child.call("start", ids=[m.id])
        hold_until = time.monotonic() + 3 * self.lease_seconds
        stolen: list[Delivery] = []
        while time.monotonic() < hold_until:
            stolen += broker.fetch(1, min(0.5, max(0.05, hold_until - time.monotonic())))
        broker.ack_many(stolen)
        assert not stolen, (f"a message held by a live consumer for {3 * self.lease_seconds:.1f}s "
                            f"(3x lease_seconds) was delivered to another consumer")
        child.call("ack", ids=[m.id])
        child.stop()
        assert broker.fetch(1, 0.5) == [], "an acked message came back"

    def _crash_loop(self, broker: Broker, consumers: Callable[[Broker], ConsumerProcess],
                    poison: Outgoing, bystanders: list[Outgoing]) -> None:
        everyone = {poison.id, *(b.id for b in bystanders)}
        bound = self.recovery_bound(broker)
        for death in range(1, self.max_deliveries + 1):
            child = consumers(broker)
            held = child.fetch(len(everyone), len(everyone), bound + self.settle_time)
            ids = {h["id"] for h in held}
            assert poison.id in ids, (f"after {death - 1} crash(es) the poison message was not delivered "
                                      f"again within {bound}s (held: {len(ids)} of {len(everyone)})")
            child.call("start", ids=[poison.id])
            child.kill()

    def _await_dead_letter(self, broker: Broker, mid: str) -> tuple[list[Any], list[Delivery]]:
        """Wait for message ``mid``'s dead letter while fetching as a worker would (a broker without a reaper,
        such as SQS, dead-letters it when it is received again). Returns its dead-letter records and the
        deliveries fetched meanwhile (acked); stops at the first one: the message delivered once more means
        the crash limit failed."""
        deadline = time.monotonic() + self.recovery_bound(broker) + self.settle_time
        dead: list[Any] = []
        stray: list[Delivery] = []
        while time.monotonic() < deadline and not stray:
            dead = [r for r in broker.dead_letters() if r.id == mid]
            if dead:
                break
            stray += broker.fetch(1, 0.2)
        broker.ack_many(stray)
        return dead, stray

    @requires("ack", "cross_process", "dead_letter")
    def test_crash_loop_goes_to_dead_letters(self, broker: Broker,
                                             consumers: Callable[[Broker], ConsumerProcess]) -> None:
        """A message whose consumer dies while running it ``max_deliveries`` times is dead-lettered with
        a reason naming the crash loop."""
        poison = _msg({"poison": True})
        broker.publish(poison)
        self._crash_loop(broker, consumers, poison, [])
        dead, stray = self._await_dead_letter(broker, poison.id)
        assert dead, (f"a message that killed its consumer {self.max_deliveries} times was not dead-lettered "
                      f"(delivered again {len(stray)} time(s) instead)")
        assert "crash" in dead[0].reason.lower(), f"the reason must name the crash loop: {dead[0].reason!r}"
        assert dead[0].body == poison.body
        assert broker.fetch(1, 0.3) == []

    @requires("ack", "cross_process", "dead_letter")
    def test_crash_loop_spares_prefetched_messages(self, broker: Broker,
                                                   consumers: Callable[[Broker], ConsumerProcess]) -> None:
        """Only the message that was *running* (``Broker.started``) is charged a crash: messages the dying
        consumer had only prefetched go back uncharged and are never dead-lettered."""
        poison = _msg({"poison": True})
        bystanders = [_msg({"i": i}) for i in range(4)]
        broker.publish(poison)
        broker.publish_many(bystanders)
        self._crash_loop(broker, consumers, poison, bystanders)
        bound = self.recovery_bound(broker)
        want = {b.id for b in bystanders}
        deadline = time.monotonic() + bound + self.settle_time
        back: dict[str, Delivery] = {}
        dead: dict[str, str] = {}
        while not want <= back.keys() and time.monotonic() < deadline:
            for d in broker.fetch(len(want), 0.2):
                back[d.id] = d
            dead = {r.id: r.reason for r in broker.dead_letters()}
            if want & dead.keys():
                break  # a bystander was dead-lettered: no need to wait for the rest
        broker.ack_many(d for d in back.values() if d.id != poison.id)
        dead = {r.id: r.reason for r in broker.dead_letters()}
        charged = {b.id: dead[b.id] for b in bystanders if b.id in dead}
        assert not charged, f"prefetched (never started) messages were dead-lettered: {charged}"
        assert {b.id for b in bystanders} <= back.keys(), "prefetched messages of a dead consumer were lost"
        if poison.id not in dead:
            # The reaper may run just after the bystanders came back, or (a broker without one: SQS) the
            # message is dead-lettered when it is received again: keep consuming, as a worker would. It must
            # not be delivered again.
            found, stray = self._await_dead_letter(broker, poison.id)
            assert not stray, (f"after {self.max_deliveries} crashes the message that was running was delivered "
                               f"again ({[d.id for d in stray]}) instead of dead-lettered")
            assert found, "the message that was running is not dead-lettered"

    # --- no crash: exactly once ---------------------------------------------------------------------
    @requires("ack")
    def test_competing_consumer_threads_each_message_once(self, broker: Broker,
                                                          make_broker: Callable[[str], Broker]) -> None:
        n = self.competing_messages
        msgs = [_msg({"i": i}) for i in range(n)]
        seen: Counter[str] = Counter()
        lock = threading.Lock()
        done = threading.Event()
        errors: list[BaseException] = []
        deadline = time.monotonic() + self.competing_warmup + self.settle_time * 6 + n / 100

        def consume(b: Broker) -> None:
            try:
                while time.monotonic() < deadline:
                    batch = b.fetch(10, 0.2)
                    b.ack_many(batch)
                    with lock:
                        seen.update(d.id for d in batch)
                        if len(seen) >= n:
                            done.set()
                    if done.is_set() and not batch:
                        return
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        brokers = [make_broker(broker.queue) for _ in range(4)]
        threads = [threading.Thread(target=consume, args=(b,)) for b in brokers]
        for t in threads:
            t.start()
        time.sleep(self.competing_warmup)  # nothing to wait on: the consumers are joining their group
        for i in range(0, n, 500):
            broker.publish_many(msgs[i:i + 500])
        for t in threads:
            t.join()
        for b in brokers:
            b.close()
        assert not errors, errors
        self._assert_exactly_once(seen, msgs)

    @requires("ack", "cross_process")
    def test_competing_consumer_processes_each_message_once(
            self, broker: Broker, consumers: Callable[[Broker], ConsumerProcess]) -> None:
        n = self.competing_messages
        msgs = [_msg({"i": i}) for i in range(n)]
        children = [consumers(broker) for _ in range(4)]
        for c in children:
            c.call("drain")
        time.sleep(self.competing_warmup)
        for i in range(0, n, 500):
            broker.publish_many(msgs[i:i + 500])

        def seen() -> Counter[str]:
            return Counter(i for c in children for ev in list(c.events) for i in ev["ids"])

        deadline = time.monotonic() + self.settle_time * 6 + n / 100
        while len(seen()) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        quiet_until = time.monotonic() + 0.5  # late duplicates show up here
        while time.monotonic() < quiet_until:
            time.sleep(0.05)
        for c in children:
            c.call("stop_drain")
        self._assert_exactly_once(seen(), msgs)

    @staticmethod
    def _assert_exactly_once(seen: Counter[str], msgs: list[Outgoing]) -> None:
        ids = {m.id for m in msgs}
        lost = ids - seen.keys()
        dup = {k: v for k, v in seen.items() if v > 1}
        assert not lost and not dup, (f"{len(msgs)} messages, 4 consumers, no crash: {len(lost)} never delivered, "
                                      f"{len(dup)} delivered more than once ({sum(dup.values()) - len(dup)} extra)")
        assert seen.keys() <= ids

    # --- nack delay, count, purge, close, concurrency -------------------------------------------------
    @requires("ack", "requeue")
    def test_nack_delay_is_honoured(self, broker: Broker) -> None:
        delay = 1.5
        m = _msg()
        broker.publish(m)
        d = self._fetch_ids(broker, {m.id}, self.settle_time)[m.id]
        t0 = time.monotonic()
        broker.nack(d, requeue=True, delay=delay)
        back = self._fetch_ids(broker, {m.id}, delay + self.settle_time)
        took = time.monotonic() - t0
        assert m.id in back, f"nack(delay={delay}) never delivered the message again"
        broker.ack(back[m.id])
        assert took >= delay - 0.05, f"nack(delay={delay}) delivered it again after {took:.2f}s"

    @staticmethod
    def _steady_buffered(consumer: Broker, then: Callable[[], int]) -> tuple[int, int, bool]:
        """``(then(), consumer.buffered(), steady)``: ``then()`` read between two reads of
        ``consumer.buffered()``; ``steady`` if both reads agree (no delivery reached the buffer meanwhile)."""
        before = consumer.buffered()
        value = then()
        after = consumer.buffered()
        return value, after, before == after

    @requires("ack", "count")
    def test_count_excludes_in_flight(self, broker: Broker) -> None:
        """``count()`` is the waiting messages only. Of 3 published, the one fetched and those the consumer's
        client has received but not returned yet (``buffered()``, its prefetch buffer: the server holds them
        as unacked) are in flight: ``count() == 3 - 1 - buffered()``, once the buffer is steady."""
        broker.publish_many([_msg() for _ in range(3)])
        d = self.fetch_all(broker, 1)
        assert len(d) == 1
        last = (-1, -1, False)

        def exact() -> bool:
            nonlocal last
            last = self._steady_buffered(broker, broker.count)
            n, buffered, steady = last
            return steady and 0 <= buffered <= 2 and n == 2 - buffered

        ok = _eventually(exact, self.settle_time)
        n, buffered, _ = last
        assert ok, (f"count() is {n} with 3 published, 1 fetched and {buffered} in the consumer's buffer "
                    f"(buffered()): it must be 3 - 1 - {buffered} (in-flight messages are not waiting)")
        rest = self.fetch_all(broker, 2)
        broker.ack_many([*d, *rest])
        assert len(rest) == 2, f"only {len(rest)} of the 2 other messages could be fetched"

    @requires("ack", "purge")
    def test_purge_leaves_in_flight_alone(self, broker: Broker, make_broker: Callable[[str], Broker]) -> None:
        """``purge()`` deletes exactly the waiting messages. Of 3 published, the one another consumer fetched
        and those its client buffered (``buffered()``) are in flight: purge returns ``3 - 1 - buffered()``,
        and every in-flight message, fetched or buffered, comes back when that consumer closes."""
        msgs = [_msg() for _ in range(3)]
        ids = {m.id for m in msgs}
        broker.publish_many(msgs)
        other = make_broker(broker.queue)
        held = self.fetch_all(other, 1)
        assert len(held) == 1
        if broker.capabilities.count:  # let the buffer fill first, so that purge has a real race to lose
            _eventually(lambda: self._steady_buffered(other, broker.count)[:2] in {(2, 0), (1, 1), (0, 2)},
                        self.settle_time)
        purged = broker.purge()
        assert 0 <= purged <= 2, f"purge() returned {purged} with 3 published and 1 of them fetched by a consumer"
        # a delivery the server made before the purge may still be on its way into the buffer: wait for it
        ok = _eventually(lambda: other.buffered() == 2 - purged, self.settle_time)
        assert ok, (f"purge() deleted {purged} of 3 messages; 1 is fetched and the other consumer's buffer holds "
                    f"{other.buffered()} (buffered()): purge must delete exactly the waiting 3 - 1 - buffered()")
        survivors = 3 - purged
        other.close()  # the in-flight ones go back: purge must not have deleted any
        deadline = time.monotonic() + self.recovery_bound(broker) + self.settle_time
        back: dict[str, Delivery] = {}
        while len(back) < survivors and time.monotonic() < deadline:
            for d in broker.fetch(survivors - len(back), 0.2):
                back[d.id] = d
        extra = broker.fetch(3, 0.5)
        broker.ack_many([*back.values(), *extra])
        assert held[0].id in back, "purge() deleted a message that was in flight (fetched by another consumer)"
        assert back.keys() <= ids, f"unknown messages came back: {back.keys() - ids}"
        assert len(back) == survivors, (f"{survivors - len(back)} of the {survivors - 1} messages in the other "
                                        f"consumer's buffer did not come back after its close(): purge() "
                                        f"deleted them or close() lost them")
        assert not extra, (f"purge() returned {purged} but left {len(extra)} more waiting messages "
                           f"that were neither fetched nor buffered")

    @requires("ack")
    def test_close_is_idempotent_and_returns_prefetched(self, broker: Broker,
                                                        make_broker: Callable[[str], Broker]) -> None:
        msgs = [_msg() for _ in range(3)]
        broker.publish_many(msgs)
        other = make_broker(broker.queue)
        held = self.fetch_all(other, 3)
        assert len(held) == 3
        other.ack(held[0])
        other.close()
        other.close()  # idempotent
        want = {held[1].id, held[2].id}
        back = self._fetch_ids(broker, want, self.settle_time)
        assert want <= back.keys(), "close() did not return unacked prefetched messages"
        broker.ack_many(back.values())
        assert held[0].id not in back, "close() returned a message that had been acked"

    @requires("ack", "requeue")
    def test_settle_from_many_threads_while_fetching(self, broker: Broker) -> None:
        """ack and nack from 4 threads while the fetch loop runs: every message ends acked once."""
        n = 400
        msgs = [_msg({"i": i}) for i in range(n)]
        broker.publish_many(msgs)
        work: queue_mod.Queue[Delivery | None] = queue_mod.Queue()
        acked: Counter[str] = Counter()
        nacked: set[str] = set()
        lock = threading.Lock()
        errors: list[BaseException] = []

        def settle() -> None:
            while (d := work.get()) is not None:
                try:
                    if d.id not in nacked and hash(d.id) % 5 == 0:
                        with lock:
                            nacked.add(d.id)
                        broker.nack(d, requeue=True)
                    else:
                        broker.ack(d)
                        with lock:
                            acked[d.id] += 1
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

        threads = [threading.Thread(target=settle) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + self.settle_time * 4
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= n:
                    break
            for d in broker.fetch(20, 0.1):
                work.put(d)
        for _ in threads:
            work.put(None)
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(acked) == n, f"{n - len(acked)} messages never acked"
        assert broker.fetch(5, 0.5) == [], "a message acked from another thread was delivered again"

    # --- connection loss and service restart ----------------------------------------------------------
    @requires("ack", "cross_process")
    def test_reconnects_after_connection_cut(self, request: pytest.FixtureRequest, broker: Broker,
                                             cut_connection: Callable[[Broker], None] | None) -> None:
        if cut_connection is None:
            self._untestable(request, "no 'cut_connection' fixture: the plugin's tests must provide one")
            raise NotImplementedError("override the 'cut_connection' fixture")
        first = [_msg({"i": i}) for i in range(4)]
        broker.publish_many(first)
        held = self.fetch_all(broker, 2)
        assert len(held) == 2
        cut_connection(broker)
        second = [_msg({"j": i}) for i in range(4)]
        for m in second:
            broker.publish(m)  # must not raise: the broker reconnects
        for d in held:
            try:
                broker.ack(d)  # may be lost with the connection: then the message is delivered again
            except Exception:  # noqa: BLE001
                pass
        want = {m.id for m in first + second} - {d.id for d in held}
        back = self._fetch_ids(broker, want, self.recovery_bound(broker) + self.settle_time)
        missing = want - back.keys()
        broker.ack_many(back.values())
        assert not missing, f"{len(missing)} of {len(want)} messages lost after the connection was cut"

    @requires("ack", "durable", "cross_process")
    def test_durable_across_service_restart(self, request: pytest.FixtureRequest, broker: Broker,
                                            consumers: Callable[[Broker], ConsumerProcess],
                                            make_broker: Callable[[str], Broker],
                                            restart_service: Callable[[], None] | None) -> None:
        """Messages waiting and in flight survive a restart of the service (and the death of the consumer)."""
        if restart_service is None:
            self._untestable(request, "declares 'durable' but provides no 'restart_service' fixture")
            raise NotImplementedError("override the 'restart_service' fixture")
        msgs = [_msg({"i": i}) for i in range(6)]
        broker.publish_many(msgs)
        child = consumers(broker)
        held = child.fetch(2, 2, self.settle_time)
        assert len(held) == 2
        child.kill()
        restart_service()
        fresh = make_broker(broker.queue)
        try:
            want = {m.id for m in msgs}
            # a restarted server may still be recovering its queues, and a loaded machine slows that down
            waited = self.recovery_bound(fresh) + self.settle_time * 4
            back = self._fetch_ids(fresh, want, waited)
            fresh.ack_many(back.values())
            if want - back.keys():
                try:  # tell "not delivered in time" from "gone"
                    left = f"count() now says {fresh.count()}" if fresh.capabilities.count else "no count()"
                except Exception as exc:  # noqa: BLE001 - diagnostics only
                    left = f"count() failed: {exc!r}"
                pytest.fail(f"{len(want - back.keys())} of 6 messages lost by a service restart: not delivered "
                            f"within {waited:.0f}s; {left}")
        finally:
            fresh.close()


def _eventually(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()

