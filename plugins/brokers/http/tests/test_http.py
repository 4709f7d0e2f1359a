"""The http broker: the broker contract for what it declares (at-most-once), the listener checks, the RPC."""

from __future__ import annotations

import urllib.request

from boostkernel_http import call
from boostkernel_http.broker import HttpBroker

from boostkernel.testing.listener import ListenerBrokerContract, ListenerContract, SyncCallContract


class TestHttpContract(ListenerBrokerContract):
    broker_class = HttpBroker


class TestHttpListener(ListenerContract):
    broker_class = HttpBroker


class TestHttpCall(SyncCallContract):
    broker_class = HttpBroker
    call = staticmethod(call)


def test_a_plain_http_client_can_post_kwargs() -> None:
    b = HttpBroker("http_curl", "http://127.0.0.1:0")
    b.listen()
    try:
        req = urllib.request.Request(str(b.url), data=b'{"x": 1}', method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 202
        assert [d.body for d in b.fetch(1, 5)] == [b'{"x": 1}']
    finally:
        b.close()
