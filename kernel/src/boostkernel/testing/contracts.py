"""Contract mixins: subclass one, override its one factory fixture, and pytest runs the whole contract.

Tests are gated by the capabilities the plugin declares: a test for a capability the plugin does not
declare is skipped with the reason shown. Honest gaps that are not capabilities go into
``expected_failures = {"test_name": "reason"}`` and run as strict xfails (fixing the gap turns them red).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..broker import Broker, Outgoing
from ..errors import TaskTimeout
from ..executor import Executor
from ..message import Envelope, uuid7
from ..store import Store
from .delivery import DeliveryContract
from .helpers import requires as requires


class _Contract:
    expected_failures: dict[str, str] = {}
    #: Gaps whose failure depends on timing the test cannot control (e.g. when a Kafka group rebalance
    #: completes): non-strict xfails, so neither outcome fails the run. Prefer ``expected_failures``.
    timing_dependent_failures: dict[str, str] = {}
    #: If set, only these tests run in the class (e.g. the durability test against a private instance).
    only_tests: frozenset[str] | None = None

    def _gate(self, request: pytest.FixtureRequest, caps: Any) -> None:
        fn = request.function
        if not getattr(self, "delivery_tests", True) and fn.__module__.endswith("testing.delivery"):
            pytest.skip(f"{type(self).__name__}.delivery_tests is False: another class runs them")
        only = getattr(self, "only_tests", None)
        if only is not None and fn.__name__ not in only:
            pytest.skip(f"{type(self).__name__} runs only {sorted(only)} (another class runs the rest)")
        for cap in getattr(fn, "_requires", ()):
            if not getattr(caps, cap, False):
                pytest.skip(f"{type(caps).__name__} does not declare {cap!r}")
        reason = self.expected_failures.get(fn.__name__)
        if reason:
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
        reason = self.timing_dependent_failures.get(fn.__name__)
        if reason:
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=False))


def _msg(body: dict[str, Any] | None = None, priority: int = 0, eta: float | None = None) -> Outgoing:
    env = Envelope("contract", [], body or {})
    return Outgoing(env.id, env.encode(), priority, eta)


class BrokerContract(DeliveryContract, _Contract):
    """Override ``make_broker``: a fixture returning ``callable(queue_name) -> Broker``.

    The API tests below run for every broker; the delivery tests of :class:`DeliveryContract` (crash
    redelivery, competing consumers, live long task, crash loop, nack delay, reconnect, durability …)
    run for every broker declaring ``ack``, in real processes. Declare the timing ``make_broker``
    configures (``lease_seconds``, ``recovery_seconds``, ``max_deliveries``) and override the
    ``cut_connection`` / ``restart_service`` fixtures; see docs/plugins.md.
    """

    @pytest.fixture
    def make_broker(self) -> Callable[[str], Broker]:
        raise NotImplementedError("override the 'make_broker' fixture in your test class")

    @pytest.fixture
    def queue_name(self) -> str:
        return f"contract_{uuid.uuid4().hex[:10]}"

    @pytest.fixture
    def broker(self, request: pytest.FixtureRequest, make_broker: Callable[[str], Broker],
               queue_name: str) -> Iterator[Broker]:
        b = make_broker(queue_name)
        self._gate(request, b.capabilities)
        yield b
        try:
            try:
                if b.capabilities.purge:
                    b.purge()
            finally:
                b.close()
        except Exception:
            # a known gap (strict xfail) may leave the broker unable to clean up: the xfail reports it
            if request.function.__name__ not in self.expected_failures:
                raise

    # --- tests ------------------------------------------------------------------------------------
    def test_publish_fetch_ack_roundtrip(self, broker: Broker) -> None:
        m = _msg({"x": 1, "s": "héllo"})
        broker.publish(m)
        got = self.fetch_all(broker, 1)
        assert len(got) == 1
        assert got[0].id == m.id
        assert got[0].body == m.body
        broker.ack(got[0])
        assert broker.fetch(1, 0.3) == []

    def test_fetch_times_out_empty(self, broker: Broker) -> None:
        t0 = time.monotonic()
        assert broker.fetch(5, 0.3) == []
        assert time.monotonic() - t0 < 0.3 + 2.0

    def test_fetch_respects_max_messages(self, broker: Broker) -> None:
        msgs = [_msg({"i": i}) for i in range(10)]
        broker.publish_many(msgs)
        first = self.fetch_all(broker, 3)
        assert len(first) == 3
        rest = self.fetch_all(broker, 7)
        assert len(rest) == 7
        assert {d.id for d in first + rest} == {m.id for m in msgs}
        broker.ack_many(first + rest)

    @requires("fetch_any_thread")
    def test_fetch_from_threads_in_turn(self, broker: Broker) -> None:
        """``fetch_any_thread``: fetches made in turn by different threads (as the consume loop's two fetching
        threads make them) deliver every message once, and acks made from yet another thread settle them."""
        msgs = [_msg({"i": i}) for i in range(30)]
        broker.publish_many(msgs)
        got: list[Any] = []
        deadline = time.monotonic() + 10 * self.settle_time
        while len(got) < len(msgs) and time.monotonic() < deadline:
            t = threading.Thread(target=lambda: got.extend(broker.fetch(7, 1.0)))  # a new thread every turn
            t.start()
            t.join()
        ids = [d.id for d in got]
        assert len(ids) == len(set(ids)), "a message was delivered twice"
        assert set(ids) == {m.id for m in msgs}
        broker.ack_many(got)
        assert broker.fetch(1, 0.3) == []

    def test_concurrent_producers_exactly_once_each(self, broker: Broker) -> None:
        ids: list[str] = []
        lock = threading.Lock()

        def produce() -> None:
            for i in range(50):
                m = _msg({"i": i})
                broker.publish(m)
                with lock:
                    ids.append(m.id)

        threads = [threading.Thread(target=produce) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = self.fetch_all(broker, 200, timeout=self.settle_time * 3)
        assert sorted(d.id for d in got) == sorted(ids)
        broker.ack_many(got)

    @requires("requeue")
    def test_nack_requeue_redelivers(self, broker: Broker) -> None:
        m = _msg()
        broker.publish(m)
        d = self.fetch_all(broker, 1)[0]
        broker.nack(d, requeue=True)
        again = self.fetch_all(broker, 1)
        assert [x.id for x in again] == [m.id]
        assert again[0].delivery_count >= 2
        broker.ack(again[0])

    @requires("dead_letter")
    def test_dead_letter_keeps_reason_and_replays(self, broker: Broker) -> None:
        m = _msg({"bad": True})
        broker.publish(m)
        d = self.fetch_all(broker, 1)[0]
        broker.dead_letter(d, "reason: testing")
        assert broker.fetch(1, 0.3) == []
        dead = broker.dead_letters()
        assert [(r.id, r.reason) for r in dead] == [(m.id, "reason: testing")]
        assert dead[0].body == m.body
        assert broker.replay_dead_letters() == 1
        back = self.fetch_all(broker, 1)
        assert [x.id for x in back] == [m.id]
        broker.ack(back[0])
        assert broker.dead_letters() == []

    @requires("count", "purge")
    def test_count_and_purge(self, broker: Broker) -> None:
        broker.publish_many([_msg() for _ in range(5)])
        assert _eventually(lambda: broker.count() == 5, self.settle_time)
        assert broker.purge() == 5
        assert broker.count() == 0

    @requires("ack")
    def test_close_returns_unacked_deliveries(self, broker: Broker, make_broker: Callable[[str], Broker]) -> None:
        m = _msg()
        broker.publish(m)
        first = make_broker(broker.queue)
        got = self.fetch_all(first, 1)
        assert [d.id for d in got] == [m.id]
        first.close()  # graceful stop without ack: the message must come back
        again = self.fetch_all(broker, 1)
        assert [d.id for d in again] == [m.id]
        broker.ack(again[0])

    @requires("ack")
    def test_ack_after_close_does_not_raise(self, broker: Broker, make_broker: Callable[[str], Broker]) -> None:
        other = make_broker(broker.queue)
        broker.publish(_msg())
        d = self.fetch_all(other, 1)[0]
        other.close()
        try:
            other.ack(d)  # a stale ack is dropped or harmless, never a crash of the caller
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - the failure message is the point
            pytest.fail(f"ack after close raised {exc!r}")
        left = self.fetch_all(broker, 1)
        broker.ack_many(left)

    @requires("priority")
    def test_priority_higher_first(self, broker: Broker) -> None:
        low, high, mid = _msg(priority=1), _msg(priority=9), _msg(priority=5)
        broker.publish_many([low, high, mid])
        _eventually(lambda: broker.count() == 3, self.settle_time)
        got = [self.fetch_all(broker, 1)[0] for _ in range(3)]
        assert [d.id for d in got] == [high.id, mid.id, low.id]
        broker.ack_many(got)

    @requires("delay")
    def test_delayed_message_waits_for_eta(self, broker: Broker) -> None:
        m = _msg(eta=time.time() + 1.5)
        broker.publish(m)
        assert broker.fetch(1, 0.5) == []
        got = self.fetch_all(broker, 1, timeout=5.0)
        assert [d.id for d in got] == [m.id]
        broker.ack(got[0])

    def test_binary_and_large_bodies_intact(self, broker: Broker) -> None:
        env = Envelope("contract", ["x" * 200_000], {"u": "\u2603\U0001f600"})
        m = Outgoing(env.id, env.encode())
        broker.publish(m)
        got = self.fetch_all(broker, 1)
        assert got[0].body == m.body
        broker.ack(got[0])


class ExecutorContract(_Contract):
    """Override ``make_executor``: a fixture returning ``callable(max_workers) -> Executor``."""

    #: How long the CPU-bound call in the timeout test would run if nothing stopped it (lower it for a
    #: mode whose honest gap is that test, e.g. gevent/eventlet, which cannot preempt such a loop).
    busy_loop_seconds: float = 30.0

    @pytest.fixture
    def make_executor(self) -> Callable[[int], Executor]:
        raise NotImplementedError("override the 'make_executor' fixture in your test class")

    @pytest.fixture
    def executor(self, request: pytest.FixtureRequest, make_executor: Callable[[int], Executor]) -> Iterator[Executor]:
        ex = make_executor(4)
        self._gate(request, ex.capabilities)
        yield ex
        ex.shutdown(wait=True, timeout=10)

    class _Job:
        is_async = False

        def __init__(self, fn: Callable[[], None]) -> None:
            self.fn = fn

        def run(self) -> None:
            self.fn()

        async def run_async(self) -> None:
            self.fn()

    def job(self, fn: Callable[[], None]) -> Any:
        return self._Job(fn)

    def test_runs_every_job(self, executor: Executor) -> None:
        done: list[int] = []
        lock = threading.Lock()

        def add(i: int) -> Callable[[], None]:
            def f() -> None:
                with lock:
                    done.append(i)
            return f

        for i in range(200):
            executor.submit(self.job(add(i)))
        executor.shutdown(wait=True, timeout=20)
        assert sorted(done) == list(range(200))

    def test_shutdown_waits_for_running_jobs(self, executor: Executor) -> None:
        finished = threading.Event()

        def slow() -> None:
            time.sleep(0.3)
            finished.set()

        executor.submit(self.job(slow))
        executor.shutdown(wait=True, timeout=10)
        assert finished.is_set()

    def test_a_crashing_job_does_not_stop_the_executor(self, executor: Executor) -> None:
        ran = threading.Event()

        def boom() -> None:
            raise RuntimeError("boom")

        executor.submit(self.job(boom))
        executor.submit(self.job(ran.set))
        executor.shutdown(wait=True, timeout=10)
        assert ran.is_set()

    def test_back_pressure_and_parallelism(self, executor: Executor) -> None:
        if executor.max_workers < 2:
            pytest.skip("single-slot executor: parallelism does not apply")
        release = threading.Event()
        running = []
        lock = threading.Lock()

        def hold() -> None:
            with lock:
                running.append(1)
            release.wait(10)

        for _ in range(executor.max_workers):
            executor.submit(self.job(hold))
        assert _eventually(lambda: len(running) == executor.max_workers, 5)
        blocked = threading.Event()

        def submit_one_more() -> None:
            executor.submit(self.job(lambda: None))
            blocked.set()

        t = threading.Thread(target=submit_one_more)
        t.start()
        time.sleep(0.3)
        assert not blocked.is_set(), "submit must block while every worker is busy"
        release.set()
        t.join(5)
        assert blocked.is_set()

    @requires("timeout")
    def test_call_with_timeout_stops_long_call(self, executor: Executor) -> None:
        def busy() -> None:
            end = time.monotonic() + self.busy_loop_seconds
            while time.monotonic() < end:
                pass

        t0 = time.monotonic()
        with pytest.raises(TaskTimeout):
            executor.call_with_timeout(busy, 0.5)
        assert time.monotonic() - t0 < 5


class StoreContract(_Contract):
    """Override ``make_store``: a fixture returning ``callable() -> Store``."""

    @pytest.fixture
    def make_store(self) -> Callable[[], Store]:
        raise NotImplementedError("override the 'make_store' fixture in your test class")

    @pytest.fixture
    def store(self, request: pytest.FixtureRequest, make_store: Callable[[], Store]) -> Iterator[Store]:
        s = make_store()
        self._gate(request, s.capabilities)
        yield s
        s.close()

    def test_result_roundtrip(self, store: Store) -> None:
        tid = uuid7()
        assert store.get_result(tid) is None
        store.put_result(tid, {"status": "success", "result": [1, "a", None]}, ttl=60)
        assert store.get_result(tid) == {"status": "success", "result": [1, "a", None]}

    def test_wait_wakes_when_result_lands(self, store: Store, make_store: Callable[[], Store]) -> None:
        tid = uuid7()
        writer = make_store()

        def later() -> None:
            time.sleep(0.3)
            writer.put_result(tid, {"status": "success", "result": 42}, ttl=60)

        threading.Thread(target=later).start()
        t0 = time.monotonic()
        rec = store.get_result(tid, timeout=5)
        waited = time.monotonic() - t0
        writer.close()
        assert rec is not None and rec["result"] == 42
        assert 0.2 < waited < 2.0

    def test_ttl_expires(self, store: Store) -> None:
        store.set("contract:ttl", {"a": 1}, ttl=0.3)
        assert store.get("contract:ttl") == {"a": 1}
        time.sleep(0.5)
        assert store.get("contract:ttl") is None

    def test_set_only_if_absent(self, store: Store) -> None:
        key = f"contract:nx:{uuid7()}"
        assert store.set(key, 1, ttl=30, only_if_absent=True) is True
        assert store.set(key, 2, ttl=30, only_if_absent=True) is False
        assert store.get(key) == 1
        assert store.delete(key) is True
        assert store.delete(key) is False

    def test_incr_is_atomic_across_threads(self, store: Store, make_store: Callable[[], Store]) -> None:
        key = f"contract:ctr:{uuid7()}"
        stores = [make_store() for _ in range(4)]

        def bump(s: Store) -> None:
            for _ in range(50):
                s.incr(key, 1, ttl=60)

        threads = [threading.Thread(target=bump, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in stores:
            s.close()
        assert store.incr(key, 0) == 200

    def test_lock_excludes_other_owner(self, store: Store) -> None:
        name = f"contract-lock-{uuid7()}"
        assert store.acquire_lock(name, "a", ttl=30)
        assert not store.acquire_lock(name, "b", ttl=30)
        assert store.acquire_lock(name, "a", ttl=30)  # renew
        assert store.release_lock(name, "a")
        assert store.acquire_lock(name, "b", ttl=30)
        store.release_lock(name, "b")


def _eventually(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()
