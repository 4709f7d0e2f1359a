"""boostkernel.timeouts: the helper-thread timeout the threads and asyncio executors (and cancel) share."""

from __future__ import annotations

import threading
import time

import pytest

from boostkernel import TaskTimeout, call_with_timeout, raise_in_thread


def test_returns_the_result() -> None:
    assert call_with_timeout(lambda: 6 * 7, 5.0) == 42


def test_reraises_the_functions_own_error() -> None:
    def boom() -> None:
        raise KeyError("inner")

    with pytest.raises(KeyError, match="inner"):
        call_with_timeout(boom, 5.0)


def test_times_out_and_stops_the_abandoned_call() -> None:
    stopped = threading.Event()

    def spin() -> None:
        try:
            while True:  # pure Python: interruptible at the next bytecode
                pass
        except TaskTimeout:
            stopped.set()
            raise

    t0 = time.monotonic()
    with pytest.raises(TaskTimeout, match="0.2s timeout"):
        call_with_timeout(spin, 0.2)
    assert time.monotonic() - t0 < 5
    assert stopped.wait(10), "the helper thread went on running after the timeout"


def test_raise_in_thread() -> None:
    assert raise_in_thread(threading.Thread(target=lambda: None), KeyError) is False  # not started
    got: list[BaseException] = []
    ready = threading.Event()

    def loop() -> None:
        ready.set()
        try:
            while True:
                pass
        except KeyError as exc:
            got.append(exc)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    assert ready.wait(5)
    assert raise_in_thread(t, KeyError) is True
    t.join(10)
    assert not t.is_alive() and len(got) == 1
