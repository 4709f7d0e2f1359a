"""Tests every listening broker (:class:`boostkernel.edge.ListenerBroker`) runs besides the broker contract.

Subclass :class:`ListenerContract` and set ``broker_class`` (the URLs take the scheme of its
``default_url``); the listener binds a free loopback port. :class:`ListenerBrokerContract` is the broker
contract itself for such a broker (the same attribute). Checked: the security rule (non-loopback needs a secret, at construction and at
decoration), signed round trip, unsigned and tampered messages refused (never delivered) and logged
once, key rotation, a foreign bare-JSON producer, and an end-to-end ``@boost`` run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from ..broker import Broker, Outgoing
from ..edge import ListenerBroker
from ..errors import ConfigError, MessageRejected, ResultsNotEnabled, TaskFailed
from ..message import Envelope
from .contracts import BrokerContract
from .helpers import wait_until


def _msg(body: dict[str, Any] | None = None) -> Outgoing:
    env = Envelope("listener", [], body or {})
    return Outgoing(env.id, env.encode())


class _OfListener:
    broker_class: type[ListenerBroker]

    @property
    def scheme(self) -> str:
        """The scheme of the test's URLs: that of the broker's ``default_url`` (``tcp``, ``ws`` …)."""
        return urlsplit(self.broker_class.default_url or "").scheme


class ListenerBrokerContract(_OfListener, BrokerContract):
    """:class:`BrokerContract` for a listening broker: every broker ``make_broker`` builds listens on a free
    loopback port (``publish`` on the same instance sends to it), and all are closed after the test. Set
    ``broker_class``."""

    settle_time = 3.0

    @pytest.fixture
    def make_broker(self) -> Iterator[Callable[[str], Broker]]:
        made: list[Broker] = []

        def make(queue: str) -> Broker:
            b = self.broker_class(queue, f"{self.scheme}://127.0.0.1:0")
            b.listen()
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()


class ListenerContract(_OfListener):
    #: options every broker of the test gets (e.g. short timeouts)
    options: dict[str, Any] = {}

    @pytest.fixture
    def make(self) -> Iterator[Callable[..., ListenerBroker]]:
        made: list[ListenerBroker] = []
        queue = f"lst_{uuid.uuid4().hex[:8]}"  # one queue per test: producers and the listener agree on it

        def make(url: str | None = None, queue: str = queue, **options: Any) -> ListenerBroker:
            b = self.broker_class(queue, url or f"{self.scheme}://127.0.0.1:0", None, **{**self.options, **options})
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()

    def listener(self, make: Callable[..., ListenerBroker], **options: Any) -> tuple[ListenerBroker, str]:
        b = make(**options)
        b.listen()
        assert b.url is not None
        return b, b.url

    def test_non_loopback_without_secret_is_refused(self, make: Callable[..., ListenerBroker]) -> None:
        with pytest.raises(ConfigError, match="not a loopback address.*secret"):
            make(f"{self.scheme}://0.0.0.0:7001")
        with pytest.raises(ConfigError, match="BOOSTKERNEL_"):
            make(f"{self.scheme}://10.1.2.3:7001")
        make(f"{self.scheme}://0.0.0.0:7001", secret="s3cret").close()  # with a secret: fine

    def test_non_loopback_refused_at_decoration(self) -> None:
        from .. import boost

        with pytest.raises(ConfigError, match="not a loopback address"):
            @boost(f"lst_dec_{uuid.uuid4().hex[:8]}", broker=self.broker_class.name,
                   broker_url=f"{self.scheme}://0.0.0.0:7001")
            def f() -> None: ...

    def test_signed_roundtrip_and_rotation(self, make: Callable[..., ListenerBroker]) -> None:
        lst, url = self.listener(make, secret="new,old")
        for key in ("new", "old"):
            m = _msg({"k": key})
            make(url, secret=key).publish(m)
            got = lst.fetch(1, 5.0)
            assert [(d.id, d.body) for d in got] == [(m.id, m.body)]

    def test_unsigned_and_tampered_refused_and_logged_once(self, make: Callable[..., ListenerBroker],
                                                          caplog: pytest.LogCaptureFixture) -> None:
        lst, url = self.listener(make, secret="right")
        caplog.set_level(logging.WARNING)
        unsigned = make(url)
        wrong = make(url, secret="wrong")
        good = make(url, secret="right")
        bad = [_msg({"n": i}) for i in range(3)]
        for m in bad:
            with contextlib.suppress(MessageRejected):  # brokers whose protocol answers say so to the producer
                unsigned.publish(m)
            with contextlib.suppress(MessageRejected):
                wrong.publish(m)
        sealed = good.frame(bad[0])
        tampered = sealed[:-2] + bytes([sealed[-2] ^ 1]) + sealed[-1:]
        with contextlib.suppress(MessageRejected):
            good.send([tampered])
        ok = _msg({"ok": True})
        good.publish(ok)  # sent last on its own connection: once it arrives, the refused ones were handled
        got = lst.fetch(10, 5.0)
        assert [d.id for d in got] == [ok.id]
        assert wait_until(lambda: lst.local() is not None and lst.local().refused >= 7, 5)  # type: ignore[union-attr]
        refusals = [r for r in caplog.records if "refused a message" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in refusals]
        assert "right" not in caplog.text and "wrong" not in caplog.text  # no key in the log
        assert lst.fetch(10, 0.3) == []

    def test_signed_message_refused_by_listener_without_secret(self, make: Callable[..., ListenerBroker]) -> None:
        lst, url = self.listener(make)
        with contextlib.suppress(MessageRejected):
            make(url, secret="x").publish(_msg())
        ok = _msg()
        make(url).publish(ok)
        assert [d.id for d in lst.fetch(10, 5.0)] == [ok.id]
        assert wait_until(lambda: lst.local().refused == 1, 5)  # type: ignore[union-attr]

    def test_garbage_refused(self, make: Callable[..., ListenerBroker]) -> None:
        lst, url = self.listener(make)
        producer = make(url)
        for junk in (b"garbage", b"\x01no-newline", b"\x02short"):
            with contextlib.suppress(MessageRejected):
                producer.send([junk])
        ok = _msg()
        producer.publish(ok)
        assert [d.id for d in lst.fetch(10, 5.0)] == [ok.id]
        assert wait_until(lambda: lst.local().refused == 3, 5)  # type: ignore[union-attr]

    def test_message_for_another_queue_refused(self, make: Callable[..., ListenerBroker]) -> None:
        lst, url = self.listener(make)
        with contextlib.suppress(MessageRejected):
            make(url, queue="some_other_queue").publish(_msg())
        ok = _msg()
        make(url).publish(ok)
        assert [d.id for d in lst.fetch(10, 5.0)] == [ok.id]
        assert wait_until(lambda: lst.local().refused == 1, 5)  # type: ignore[union-attr]

    def test_foreign_bare_json_accepted_without_secret(self, make: Callable[..., ListenerBroker]) -> None:
        lst, url = self.listener(make)
        make(url).send([b'{"x": 1}'])
        got = lst.fetch(1, 5.0)
        assert [d.body for d in got] == [b'{"x": 1}']

    def test_count_purge_are_the_listeners_buffer(self, make: Callable[..., ListenerBroker]) -> None:
        lst, url = self.listener(make)
        producer = make(url)
        producer.publish_many([_msg() for _ in range(3)])
        assert wait_until(lambda: lst.count() == 3, 5)
        assert producer.count() == 3  # another instance in the same process sees the same listener
        assert lst.purge() == 3
        assert lst.count() == 0

    def test_boost_end_to_end(self, make: Callable[..., ListenerBroker], caplog: pytest.LogCaptureFixture) -> None:
        from .. import boost

        probe = make()
        probe.listen()
        url = probe.url
        probe.close()  # frees the port for the booster's consumer (a tiny race with other processes)
        seen: list[int] = []
        done = threading.Event()
        q = f"lst_e2e_{uuid.uuid4().hex[:8]}"

        @boost(q, broker=self.broker_class.name, broker_url=url, broker_options=dict(self.options))
        def f(x: int) -> None:
            seen.append(x)
            if len(seen) == 20:
                done.set()

        f.consume()
        try:
            assert wait_until(lambda: f.broker.local() is not None, 10)  # type: ignore[attr-defined]
            # a well-framed message whose body is not a call: dead-lettered by the kernel (logged, dropped)
            f.broker.publish(Outgoing("bad-body-1", b"\xff not json"))
            for i in range(20):
                f.push(i)
            assert done.wait(20), f"ran {len(seen)} of 20"
            assert sorted(seen) == list(range(20))
            assert wait_until(lambda: "bad-body-1" in caplog.text and "dead-lettered" in caplog.text, 10), caplog.text
        finally:
            f.stop()


class SyncCallContract(_OfListener):
    """For listening brokers whose protocol answers each request (http, grpc): ``call`` returns the result.

    Set ``broker_class`` and ``call`` (the plugin's ``call(booster, *args, timeout, **kwargs)``)."""

    call: Callable[..., Any]

    def _booster(self, results: bool = True) -> Any:
        from .. import boost

        probe = self.broker_class("probe", f"{self.scheme}://127.0.0.1:0")
        probe.listen()
        url = probe.url
        probe.close()

        @boost(f"lst_rpc_{uuid.uuid4().hex[:8]}", broker=self.broker_class.name, broker_url=url, results=results)
        def div(x: int, y: int) -> float:
            return x / y

        div.consume()
        assert wait_until(lambda: div.broker.local() is not None, 10)  # type: ignore[attr-defined]
        return div

    def test_call_returns_the_result(self) -> None:
        div = self._booster()
        try:
            call = type(self).call
            assert call(div, 6, 3, timeout=10) == 2.0
            assert [call(div, i, 1, timeout=10) for i in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
            with pytest.raises(TaskFailed, match="ZeroDivisionError"):
                call(div, 1, 0, timeout=10)
            assert div.push(9, 3).get(timeout=10) == 3.0  # the consumer's in-process store
        finally:
            div.stop()

    def test_call_without_results_says_how_to_fix(self) -> None:
        div = self._booster(results=False)
        try:
            with pytest.raises(ResultsNotEnabled, match="results=True"):
                type(self).call(div, 6, 3, timeout=10)
        finally:
            div.stop()
