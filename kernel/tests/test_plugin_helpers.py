"""Helpers the kernel offers plugins so that they do not each carry a copy of the same logic."""

from __future__ import annotations

import re
import threading
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from boostkernel.broker import Broker, Lazy, consumer_window, lease_options, name_option, poll_claims
from boostkernel.control import Control, count_per_seconds
from boostkernel.errors import ConfigError
from boostkernel.params import BoostParams


def test_consumer_window_covers_running_and_prefetched_tasks() -> None:
    assert consumer_window(None, 100) == 1  # direct use: exactly what fetch asks for
    assert consumer_window(None, 100, unbound=16) == 16
    assert consumer_window(BoostParams(queue="q", workers=1), 100) == 100
    assert consumer_window(BoostParams(queue="q", workers=200), 100) == 200 + 400  # workers + 2 x workers
    assert consumer_window(BoostParams(queue="q", workers=16, prefetch=7), 100) == 7
    assert consumer_window(BoostParams(queue="q", workers=16, prefetch=0), 100) == 1


class _Declared(Control):
    name = "declared"
    positive_seconds = {"every": "(how often)"}
    count_per_seconds_options = {"limit": "(runs, seconds)"}
    needs_executor = ("timeout", "limit cannot work with concurrency={params.concurrency!r}")
    requires = {"results": "declared needs results on queue {params.queue!r}"}


def _booster(can_timeout: bool = True, **params: Any) -> Any:
    values = {"queue": "q", "concurrency": "threads", "every": 1.5, "limit": (3, 2), "results": True, **params}
    executor = SimpleNamespace(capabilities=SimpleNamespace(timeout=can_timeout))
    return SimpleNamespace(params=SimpleNamespace(**values), executor_class=executor)


def test_declared_option_checks_of_a_control() -> None:
    _Declared.check(_booster())
    for bad in (0, -1, True, "5"):
        with pytest.raises(ConfigError, match=rf"every={bad!r} on queue 'q': must be a positive number of "
                                              r"seconds \(how often\)"):
            _Declared.check(_booster(every=bad))
    for wrong in ((0, 2), (3, 0), (3,), None, (1.5, 2)):
        with pytest.raises(ConfigError, match=r"expected \(runs, seconds\)"):
            _Declared.check(_booster(limit=wrong))
    with pytest.raises(ConfigError, match="limit cannot work with concurrency='solo'"):
        _Declared.check(_booster(can_timeout=False, concurrency="solo"))
    with pytest.raises(ConfigError, match="declared needs results on queue 'q'"):
        _Declared.check(_booster(results=False))
    assert count_per_seconds([5, 30], "limit", "") == (5, 30.0)


def test_take_buffered_and_poll_claims() -> None:
    buf: deque[int] = deque([1, 2, 3])
    ready = threading.Condition()
    assert Broker.take_buffered(buf, ready, 2, 0.0) == [1, 2]
    assert Broker.take_buffered(buf, ready, 5, 0.0) == [3]
    assert Broker.take_buffered(buf, ready, 5, 0.0) == []
    tries: list[int] = []

    def claim() -> list[int]:
        tries.append(1)
        return [7] if len(tries) == 3 else []

    woken: list[int] = []
    closed = threading.Event()
    assert poll_claims(claim, 10.0, ready, closed, woken=lambda: woken.append(1)) == [7]
    assert len(woken) == 2
    closed.set()
    assert poll_claims(list, 10.0, ready, closed) == []  # closed: returns at once


class _Counting(Broker):
    name = "counting"

    def publish(self, message: Any) -> None: ...
    def fetch(self, max_messages: int, timeout: float) -> list[Any]: return []
    def ack(self, delivery: Any) -> None: ...
    def nack(self, delivery: Any, requeue: bool = True, delay: float = 0.0) -> None: ...
    def dead_letter(self, delivery: Any, reason: str) -> None: ...


def test_crash_limit_reads_params_then_the_broker_option() -> None:
    assert _Counting("q", params=BoostParams(queue="q", max_deliveries=5)).crash_limit() == 5
    # the booster's parameter wins over a broker option of the same name
    params = BoostParams(queue="q", max_deliveries=2, broker_options={"max_deliveries": 9})
    assert _Counting("q", params=params).crash_limit() == 2
    assert _Counting("q", max_deliveries="4").crash_limit() == 4  # no params (a tool): the option
    assert _Counting("q").crash_limit() == 3  # the default


def test_lease_options_default_third_and_checks() -> None:
    assert lease_options({}, "lease", 9.0, "renew") == (9.0, 3.0)
    assert lease_options({"lease": "4", "renew": 1.5}, "lease", 9.0, "renew") == (4.0, 1.5)
    with pytest.raises(ConfigError, match=r"lease=0.5: must be >= 1 second \(the server's minimum\)"):
        lease_options({"lease": 0.5}, "lease", 9.0, "renew", "the server's minimum")
    for renew in (0, 2.0, 5.0):  # not above 0, or not under half of the lease
        with pytest.raises(ConfigError, match=r"renew=.*under half of lease \(4.0\)"):
            lease_options({"lease": 4.0, "renew": renew}, "lease", 9.0, "renew")


def test_name_option_default_set_and_refused() -> None:
    pattern = re.compile(r"^[a-z]{1,5}$")
    assert name_option({}, "topic", "queue", pattern, "x", "1-5 letters") == "queue"
    assert name_option({"topic": "abc"}, "topic", "queue", pattern, "x", "1-5 letters") == "abc"
    with pytest.raises(ConfigError, match=r"x topic name 'toolong' is not valid: 1-5 letters; choose another queue "
                                          r"name or set broker_options topic=\.\.\."):
        name_option({}, "topic", "toolong", pattern, "x", "1-5 letters")


def test_max_crashes_log_and_checked_url_of_the_broker_base() -> None:
    b = _Counting("q", url="amqp://user:secret@host/", params=BoostParams(queue="q", max_deliveries=5))
    assert b.max_crashes == 5  # crash_limit(), read once
    assert b.log.name == "boostkernel.queue.q"
    assert b.checked_url(("amqp", "amqps"), "an amqp:// URL") == "amqp://user:secret@host/"
    for url in ("redis://host/", "amqp-host", None):
        b.url = url
        with pytest.raises(ConfigError, match=r"^counting broker needs an amqp:// URL, got ") as e:
            b.checked_url(("amqp", "amqps"), "an amqp:// URL")
        assert "secret" not in str(e.value)


def test_lazy_makes_once_under_racing_threads_and_take_hands_it_over() -> None:
    made: list[object] = []

    def make() -> object:
        made.append(object())
        return made[-1]

    lazy = Lazy(make)
    start = threading.Barrier(8)
    got: list[object] = []

    def race() -> None:
        start.wait()
        got.append(lazy.get())

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(made) == 1 and got == made * 8
    assert lazy.take() is made[0] and lazy.value is None
    assert lazy.get() is made[1]  # made again after take()


def test_stop_background_runs_once_wakes_and_joins() -> None:
    closed, cond = threading.Event(), threading.Condition()

    def background() -> None:
        with cond:
            cond.wait_for(closed.is_set, timeout=30)  # woken by stop_background's notify_all

    t = threading.Thread(target=background)
    t.start()
    assert Broker.stop_background(closed, t, 30, wake=cond) is True
    assert closed.is_set() and not t.is_alive()
    assert Broker.stop_background(closed, t, 30, wake=cond) is False  # close() ran before: nothing to do
    # a background thread that closes its own broker is not joined by itself
    own = threading.Event()
    me = threading.Thread(target=lambda: Broker.stop_background(own, [threading.current_thread()], 30))
    me.start()
    me.join(10)
    assert own.is_set() and not me.is_alive()
